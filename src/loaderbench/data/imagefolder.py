"""Images on disk in the class-per-folder layout, decoded per sample: the real-world workload.

Layout: ``root/train/<class>/**/*.jpg`` plus ``root/val/<class>/...``, or ``root/<class>/...``
split by ``val_fraction`` per class (stratified; which files go to val is a pure function of
``seed``). Classes are the sorted folder names of the train split; labels are their indices.
The files, decoders and the check are described in :mod:`loaderbench.data.imagefiles`. Should
torchvision raise on a file PIL accepted, that file falls back to PIL with a warning.

Bad files are found when the dataset is built, before a run is recorded, so the dataset's
length is fixed before any DataLoader exists and every loader setting sees the same samples.
``verify=decode`` (default) decodes every file once with PIL. A file that fails is a ConfigError
naming it, or with ``on_error=skip`` it is left out and counted (``stats["skipped_files"]``).
Measured on 2,000 64×64 JPEGs (2.6 kB) on 2 busy cores: 0.25 s warm, 0.6 s from a cold page
cache, about 2.2× ``verify=header`` (0.11 s / 0.4 s), a third of decoding them for training; a
sweep pays it once per job. ``verify=none`` skips the check (for huge folders); a bad file then
fails at read time. The check reads every file, so epoch 0 starts from a warm page cache
whatever the loader settings (unless ``cold_cache=true``). torchvision 0.29 deprecates its
decoders in favour of TorchCodec (a DeprecationWarning per call, hidden outside tests).

Slow or cold storage: ``read_latency_ms`` sleeps before each file read, in the process that
reads (a DataLoader worker), like a network filesystem's round trip. ``cold_cache=true`` makes
:meth:`ImageFolderDataset.before_epoch` drop the split's files from the OS page cache with
``posix_fadvise(DONTNEED)`` (Linux; no root needed), so each epoch really reads the disk.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from loaderbench.config import ConfigError
from loaderbench.data.base import DatasetPair
from loaderbench.data.checks import check_choice, check_count, fail
from loaderbench.data.imagefiles import (
    ClassScan,
    check_files,
    decode_pil,
    decode_torchvision,
    drop_from_page_cache,
    folder_fingerprint,
    listing,
    read_bytes,
    scan_classes,
    split_by_fraction,
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

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return os.path.join(self.root, os.fsdecode(self.files[index]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.path(index)
        if self.read_latency_s:
            time.sleep(self.read_latency_s)  # the storage's round trip, paid by the reader
        try:
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
        if not (_is_number(self.read_latency_ms) and self.read_latency_ms >= 0):
            why = "must be 0 or more milliseconds"
            raise fail(
                "read_latency_ms", self.read_latency_ms, why, "e.g. dataset.read_latency_ms=0"
            )
        if self.cold_cache and not hasattr(os, "posix_fadvise"):
            raise ConfigError(
                "dataset.cold_cache=true needs os.posix_fadvise, which this platform lacks (it is "
                "Linux's); pass dataset.cold_cache=false"
            )
        if self.num_classes is not None:
            check_count(
                "num_classes",
                self.num_classes,
                least=1,
                example=10,
                note=" (null counts the class folders)",
            )
        return path


@dataclass
class _Split:
    files: list[str] = field(default_factory=list)  # relative to root
    labels: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


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


def _scan_splits(o: ImageFolderOptions, path: str) -> tuple[ClassScan, dict, str, bool]:
    """The scan, its files per split and class, the layout's name and whether root has splits."""
    train_dir, val_dir = os.path.join(path, "train"), os.path.join(path, "val")
    has_train, has_val = os.path.isdir(train_dir), os.path.isdir(val_dir)
    if has_train != has_val:
        present, absent = (train_dir, val_dir) if has_train else (val_dir, train_dir)
        raise ConfigError(
            f"dataset.root={o.root}: {present} exists but {absent} does not; add it, or put the "
            "class folders directly under the root to split them by dataset.val_fraction"
        )
    if has_train:
        scan = scan_classes(path, {"train": train_dir, "val": val_dir})
        return scan, scan.per_class, "train/val", True
    scan = scan_classes(path, {"all": path})
    per_split = split_by_fraction(scan.per_class["all"], scan.classes, o.val_fraction, o.seed)
    return scan, per_split, f"split:val_fraction={o.val_fraction},seed={o.seed}", False


def build_imagefolder(o: ImageFolderOptions) -> DatasetPair:
    """:func:`make_imagefolder` on validated options."""
    path = o.validate()
    scan, per_split, layout, split_layout = _scan_splits(o, path)
    n_classes = len(scan.classes)
    if o.num_classes is not None and o.num_classes != n_classes:
        raise ConfigError(
            f"dataset.num_classes={o.num_classes}, but {path} has {n_classes} class folders "
            f"({listing(scan.classes, 10)}); pass dataset.num_classes={n_classes} or null"
        )
    if scan.empty and o.on_error == "raise":
        raise ConfigError(
            f"class folders with no image (.jpg, .jpeg, .png): {listing(scan.empty)}; add "
            "images or remove the folders (dataset.on_error=skip keeps them as empty classes)"
        )
    candidates = [item for split in per_split.values() for images in split for item in images]
    bad, verify_s = check_files(
        path, candidates, level=o.verify, decoder=o.decoder, on_error=o.on_error
    )

    splits: dict[str, _Split] = {"train": _Split(), "val": _Split()}
    empty_classes = set(scan.empty)
    for split_name, per_class in per_split.items():
        split = splits[split_name]
        for label, images in enumerate(per_class):
            kept = [(f, size) for f, size in images if os.path.join(path, f) not in bad]
            if images and not kept:
                empty_classes.add(f"{split_name}/{scan.classes[label]}")
            for f, size in kept:
                split.files.append(f)
                split.labels.append(label)
                split.sizes.append(size)
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
        classes=scan.classes,
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
        num_classes=n_classes,
        fingerprint=folder_fingerprint(layout, {k: (s.files, s.sizes) for k, s in splits.items()}),
        stats={
            "skipped_files": float(len(bad)),
            "ignored_files": float(scan.ignored),
            "empty_classes": float(len(empty_classes)),
            "verify_s": verify_s,
        },
    )
