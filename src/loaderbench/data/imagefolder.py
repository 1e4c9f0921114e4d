"""Images on disk in the class-per-folder layout, decoded per sample: the real-world workload.

Layout: ``root/train/<class>/**/*.jpg`` plus ``root/val/<class>/...``, or ``root/<class>/...``
split by ``val_fraction`` per class (stratified; which files go to val is a pure function of
``seed``). Classes are the sorted folder names of the train split; labels are their indices.
The files, decoders and the check are described in :mod:`loaderbench.data.imagefiles`. Should
torchvision raise on a file PIL accepted, that file falls back to PIL with a warning.

Bad files are found when the dataset is built, before a run is recorded, so the dataset's
length is fixed before any DataLoader exists and every loader setting sees the same samples.
``verify=decode`` (default) decodes every file once with PIL (costs: see ``imagefiles``). A file
that fails is a ConfigError naming it, or with ``on_error=skip`` it is left out and counted
(``stats["skipped_files"]``). ``verify=none`` skips the check (for huge folders); a bad file
then fails at read time. The check reads every file, so epoch 0 starts from a warm page cache
whatever the loader settings (unless ``cold_cache=true``). Decoder warnings (libpng's "iCCP:
known incorrect sRGB profile", PIL's) are silenced and counted (``stats["decoder_warnings"]``,
one log line), never shown per file: see ``decoder_warnings``.

Classes with nothing to learn are dropped (``on_error=skip``): a class folder with no readable
training image (empty, or every file unreadable) would otherwise stay a class the model can
never see, and chance would read 1/9 where 8 classes remain. It is left out with a warning
naming it (its val images too), the remaining classes are relabelled 0..k-1 in sorted order,
and ``num_classes`` is k (``stats["dropped_classes"]``). An explicit ``dataset.num_classes`` is
checked against the class folders, before any is dropped. ``on_error=raise`` refuses such a
folder instead.

Slow or cold storage: ``read_latency_ms`` sleeps before each file read, in the process that
reads (a DataLoader worker), like a network filesystem's round trip. ``cold_cache=true`` makes
:meth:`ImageFolderDataset.before_epoch` drop the split's files from the OS page cache with
``posix_fadvise(DONTNEED)`` (Linux; no root needed), so each epoch really reads the disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from loaderbench.config import ConfigError
from loaderbench.data.base import DatasetPair
from loaderbench.data.checks import check_choice, check_count, check_storage, fail
from loaderbench.data.decoder_warnings import DecoderWarnings
from loaderbench.data.imagefiles import (
    check_files,
    decode_pil,
    decode_torchvision,
    drop_from_page_cache,
    keep_readable,
    listing,
    read_bytes,
    scan_layout,
)

log = logging.getLogger(__name__)

DECODERS = ("pil", "torchvision")
ON_ERROR = ("raise", "skip")
VERIFY = ("decode", "header", "none")
_MISSING = (None, "", "???")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class UnreadableImageError(ConfigError):
    """An image file that cannot be read or decoded; the message names the file."""


# --- the dataset ----------------------------------------------------------------------------


class ImageFolderDataset(Dataset):
    """``(uint8 tensor 3×H×W, label)`` for an integer index, read from ``root/files[index]``.

    The file list is a numpy bytes array, not a Python list of str: it pickles as one buffer for
    spawned workers, and forked workers reading it touch no per-item reference counts, so the
    list's pages stay shared (a list of str is copied page by page into every worker).
    """

    def __init__(
        self,
        *,
        root: str,
        files: Sequence[str],
        labels: Sequence[int],
        classes: Sequence[str],
        decoder: str = "pil",
        read_latency_ms: float = 0.0,
        cold_cache: bool = False,
        verified: bool = False,
    ):
        check_choice("decoder", decoder, DECODERS)
        self.root = root
        self.files = np.array([os.fsencode(f) for f in files], dtype=bytes)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = tuple(classes)
        self.decoder = decoder
        self.read_latency_s = read_latency_ms / 1000.0
        self.cold_cache = cold_cache
        self.verified = verified  # every file decoded once when the dataset was built
        self.dropped_files = 0  # by the last before_epoch
        self._fallback_warned = False
        self.warnings = DecoderWarnings()  # silenced while reading, in this process

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return os.path.join(self.root, os.fsdecode(self.files[index]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.path(index)
        if self.read_latency_s:
            time.sleep(self.read_latency_s)  # the storage's round trip, paid by the reader
        try:
            with self.warnings.quiet(native=self.decoder == "torchvision"):  # libpng: fd 2
                image = self._decode(read_bytes(path), path)
        except Exception as exc:
            fix = (
                "it was readable when the dataset was built: was it changed since? Restore it"
                if self.verified
                else "fix or remove it (dataset.verify=decode finds such files before the run, "
                "and dataset.on_error=skip then leaves them out)"
            )
            raise UnreadableImageError(
                f"{path}: cannot read the image ({type(exc).__name__}: {exc}); {fix}"
            ) from exc
        if self.warnings.count and not self.warnings.reported:
            self.warnings.reported = True  # one line per process, never one per file
            log.info(
                "decoder warnings are silenced while reading (first: %s); pixels are unchanged",
                self.warnings.first,
            )
        return image, int(self.labels[index])

    def _decode(self, data: bytearray, path: str) -> torch.Tensor:
        if self.decoder == "pil":
            return decode_pil(data)
        try:
            return decode_torchvision(data)
        except RuntimeError as exc:  # PIL read this file at build time: let it decode it
            if not self._fallback_warned:
                log.warning("torchvision cannot decode %s (%s); using PIL for it", path, exc)
                self._fallback_warned = True
            return decode_pil(data)

    def before_epoch(self, epoch: int) -> int:
        """With ``cold_cache``, drop this split's files from the page cache; return how many.

        Called in the main process before each training epoch, outside its clock. Pages that are
        dirty (files written moments ago) are only queued for writeback and stay cached.
        """
        if not self.cold_cache:
            return 0
        t0 = time.perf_counter()
        self.dropped_files = drop_from_page_cache(self.path(i) for i in range(len(self)))
        log.info(
            "epoch %d: dropped %d of %d files from the page cache in %.2f s",
            epoch, self.dropped_files, len(self), time.perf_counter() - t0,
        )  # fmt: skip
        return self.dropped_files


# --- building -------------------------------------------------------------------------------


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
                "train/ and val/ of class folders); scripts/make_imagefolder.py writes one"
            )
        path = os.path.abspath(os.path.expanduser(str(root)))
        if not os.path.isdir(path):
            what = "is not a directory" if os.path.exists(path) else "does not exist"
            raise ConfigError(
                f"dataset.root={root}: {path} {what}; pass the folder of class folders"
            )
        check_choice("decoder", self.decoder, DECODERS)
        check_choice("on_error", self.on_error, ON_ERROR)
        check_choice("verify", self.verify, VERIFY)
        if self.verify == "none" and self.on_error == "skip":
            raise ConfigError(
                "dataset.on_error=skip needs the files checked when the dataset is built; pass "
                "dataset.verify=decode (or header), or dataset.on_error=raise"
            )
        if not (_is_number(self.val_fraction) and 0.0 < self.val_fraction < 1.0):
            why = "must be a number between 0 and 1"
            raise fail("val_fraction", self.val_fraction, why, "e.g. dataset.val_fraction=0.2")
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
    scan, per_split, layout, split_layout = scan_layout(path, o.root, o.val_fraction, o.seed)
    n_classes = len(scan.classes)
    if o.num_classes is not None and o.num_classes != n_classes:
        raise ConfigError(
            f"dataset.num_classes={o.num_classes}, but {path} has {n_classes} class folders "
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
        log.info("ignored %d non-image files under %s", scan.ignored, path)

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
