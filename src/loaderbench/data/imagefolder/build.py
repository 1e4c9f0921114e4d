"""``dataset=imagefolder``'s builder: the options checked, the folder scanned and its files
checked, then the two splits (what is dropped and why: see the package docstring)."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any

from loaderbench.config import ConfigError
from loaderbench.data.decode import DECODERS, DecoderWarnings
from loaderbench.data.imagefolder.check import check_files
from loaderbench.data.imagefolder.dataset import ImageFolderDataset
from loaderbench.data.imagefolder.scan import keep_readable, listing, printable, scan_layout
from loaderbench.data.pair import DatasetPair
from loaderbench.data.storage import check_storage
from loaderbench.data.validate import check_choice, check_count, check_fraction

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
VERIFY = ("decode", "header", "none")
_MISSING = (None, "", "???")


@dataclass(frozen=True)
class ImageFolderOptions:
    """The keyword arguments of :func:`make_imagefolder` (the ``dataset`` config), checked by
    :meth:`validate`."""

    root: Any
    decoder: str = "pil"
    val_fraction: float = 0.2
    image_size: int = 64
    num_classes: int | None = None
    read_latency_ms: float = 0.0
    cold_cache: bool = False
    on_error: str = "raise"
    verify: str = "decode"
    seed: int = 0

    def validate(self) -> str:
        """Raise ConfigError naming the key for a wrong value; return the root's absolute path."""
        root = self.root
        if root in _MISSING:
            raise ConfigError(
                "dataset.root is required: pass dataset.root=/path/to/images (class folders, or "
                "train/ and val/ of class folders); python -m loaderbench.make_imagefolder writes one"
            )
        path = os.path.abspath(os.path.expanduser(str(root)))
        if not os.path.isdir(path):
            what = "is not a directory" if os.path.exists(path) else "does not exist"
            if os.path.islink(path) and not os.path.exists(path):
                what = "is a symbolic link that leads nowhere (a loop, or a missing target)"
            raise ConfigError(
                f"dataset.root={printable(str(root))}: {printable(path)} {what}; pass the folder "
                "of class folders"
            )
        check_choice("decoder", self.decoder, DECODERS)
        check_choice("on_error", self.on_error, ON_ERROR)
        check_choice("verify", self.verify, VERIFY)
        if self.verify == "none" and self.on_error == "skip":
            raise ConfigError(
                "dataset.on_error=skip needs the files checked when the dataset is built; pass "
                "dataset.verify=decode (or header), or dataset.on_error=raise"
            )
        check_fraction(self.val_fraction)
        check_count("image_size", self.image_size, least=1, example=64)
        check_storage(self.read_latency_ms, self.cold_cache)
        if self.num_classes is not None:
            check_count(
                "num_classes",
                self.num_classes,
                least=1,
                example=10,
                note=" (null counts the class folders)",
            )
        return path


def make_imagefolder(
    *,
    root: str,
    decoder: str = "pil",
    val_fraction: float = 0.2,
    image_size: int = 64,
    num_classes: int | None = None,
    read_latency_ms: float = 0.0,
    cold_cache: bool = False,
    on_error: str = "raise",
    verify: str = "decode",
    seed: int = 0,
) -> DatasetPair:
    """Train and val splits of the image folder at ``root`` (see the module docstring).

    ``image_size`` is for the transforms (which resize); ``num_classes=None`` takes the number
    of class folders, an int must equal it. Stats: ``skipped_files``, ``ignored_files``,
    ``empty_classes``, ``verify_s``. The Hydra ``_target_`` of ``conf/dataset/imagefolder.yaml``:
    its signature is the option's schema.
    """
    options = ImageFolderOptions(
        root=root,
        decoder=decoder,
        val_fraction=val_fraction,
        image_size=image_size,
        num_classes=num_classes,
        read_latency_ms=read_latency_ms,
        cold_cache=cold_cache,
        on_error=on_error,
        verify=verify,
        seed=seed,
    )
    return build_imagefolder(options)


def build_imagefolder(o: ImageFolderOptions) -> DatasetPair:
    """:func:`make_imagefolder` on validated options."""
    path = o.validate()
    scan, per_split, layout, split_layout = scan_layout(
        path, o.root, o.val_fraction, o.seed, o.on_error
    )
    n_classes = len(scan.classes)
    if o.num_classes is not None and o.num_classes != n_classes:
        raise ConfigError(
            f"dataset.num_classes={o.num_classes}, but {printable(path)} has {n_classes} class "
            "folders "
            f"({listing(scan.classes, 10)}); pass dataset.num_classes={n_classes} or null"
        )
    if scan.empty and o.on_error == "raise":
        raise ConfigError(
            f"class folders with no image (.jpg, .jpeg, .png): {listing(scan.empty)}; add "
            "images or remove the folders (dataset.on_error=skip drops those classes)"
        )
    candidates = [item for split in per_split.values() for images in split for item in images]
    warned = DecoderWarnings()
    bad, verify_s = check_files(
        path, candidates, level=o.verify, decoder=o.decoder, on_error=o.on_error, warned=warned
    )
    classes, dropped, empty_classes, splits = keep_readable(scan, per_split, bad, path)
    for split_name, split in splits.items():
        if not split.files:
            raise ConfigError(
                f"dataset.root={o.root}: the {split_name} split has no readable image (.jpg, "
                ".jpeg, .png); add images"
                + ("" if split_layout else " or raise dataset.val_fraction")
            )

    if scan.ignored:
        log.info("ignored %d non-image files under %s", scan.ignored, printable(path))

    common = dict(
        root=path,
        classes=classes,
        decoder=o.decoder,
        read_latency_ms=o.read_latency_ms,
        verified=o.verify == "decode",
    )
    train = ImageFolderDataset(
        files=splits["train"].files,
        labels=splits["train"].labels,
        cold_cache=o.cold_cache,
        **common,
    )
    val = ImageFolderDataset(files=splits["val"].files, labels=splits["val"].labels, **common)
    return DatasetPair(
        train=train,
        val=val,
        num_classes=len(classes),
        fingerprint=folder_fingerprint(layout, {k: (s.files, s.sizes) for k, s in splits.items()}),
        stats={
            "skipped_files": float(len(bad)),
            "skipped_dirs": float(len(scan.skipped_dirs)),
            "ignored_files": float(scan.ignored),
            "empty_classes": float(len(empty_classes)),
            "dropped_classes": float(len(dropped)),
            "decoder_warnings": float(warned.count),
            "verify_s": verify_s,
        },
    )


def folder_fingerprint(layout: str, splits: dict[str, tuple[list[str], list[int]]]) -> str:
    """sha256 over the layout (with val_fraction and seed when they choose the split) and the
    sorted ``(split, relative path, size)`` of every file read. A same-size rewrite of a file
    keeps the fingerprint (contents are not hashed: that would cost a full read)."""
    h = hashlib.sha256(f"imagefolder;{layout}\n".encode())
    for split in sorted(splits):
        files, sizes = splits[split]
        for f, size in sorted(zip(files, sizes, strict=True)):
            h.update(f"{split}\t{f}\t{size}\n".encode("utf-8", "surrogateescape"))
    return "imagefolder-" + h.hexdigest()[:16]
