"""Images on disk in the class-per-folder layout, decoded per sample: the real-world workload.

Layout: ``root/train/<class>/**/*.jpg`` plus ``root/val/<class>/...``, or ``root/<class>/...``
split by ``val_fraction`` per class (stratified; which files go to val is a pure function of
``seed``). Classes are the sorted folder names of the train split; labels are their indices.
Files ending in .jpg, .jpeg or .png (any case) are images; other files are ignored and counted.

Decoders (both return a uint8 tensor 3×H×W, so ``transforms=none`` also collates equal-sized
images): ``pil`` is ``Image.open(...).convert("RGB")``; ``torchvision`` is
``torchvision.io.decode_image(..., mode=RGB)`` (libjpeg-turbo/libpng, no PIL object). Both turn
grayscale, palette, RGBA and CMYK into RGB with identical pixels: alpha is *dropped*, not
composited on a background; 16-bit PNGs are scaled to 8 bits (the high byte); EXIF orientation
is not applied. Should torchvision raise on a file PIL accepted, that file falls back to PIL
with a warning.

Bad files are found when the dataset is built, before a run is recorded, so the dataset's
length is fixed before any DataLoader exists and every loader setting sees the same samples.
``verify=decode`` (default) decodes every file once with PIL, truncated images refused (JPEGs
at 1/8 scale: the whole entropy-coded stream is read, the IDCT is cheap); ``Image.verify()``
alone is not enough, it passes truncated JPEGs. A file that fails is a ConfigError naming it,
or with ``on_error=skip`` it is left out and counted (``stats["skipped_files"]``). Measured on
2,000 64×64 JPEGs (2.6 kB) on 2 busy cores: 0.25 s warm, 0.6 s from a cold page cache, about
2.2× ``verify=header`` (``Image.open`` + ``verify()``: 0.11 s / 0.4 s), a third of decoding
them for training; a sweep pays it once per job. Small files are checked serially (threads
only fight over the GIL), large ones in threads (Pillow releases the GIL while decoding).
``verify=none`` skips the check (for huge folders); a bad file then fails at read time. PIL
checks the files for the ``torchvision`` decoder too: torchvision 0.29's libpng wrapper
*crashes the process* (SIGSEGV) on some corrupt PNGs instead of raising. The check reads every
file, so epoch 0 starts from a warm page cache whatever the loader settings (unless
``cold_cache=true``). torchvision 0.29 deprecates its decoders in favour of TorchCodec (a
DeprecationWarning per call, hidden outside tests).

Slow or cold storage: ``read_latency_ms`` sleeps before each file read, in the process that
reads (a DataLoader worker), like a network filesystem's round trip. ``cold_cache=true`` makes
:meth:`ImageFolderDataset.before_epoch` drop the split's files from the OS page cache with
``posix_fadvise(DONTNEED)`` (Linux; no root needed), so each epoch really reads the disk.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype

from loaderbench.config import ConfigError
from loaderbench.data.base import DatasetPair

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
DECODERS = ("pil", "torchvision")
ON_ERROR = ("raise", "skip")
VERIFY = ("decode", "header", "none")
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_MISSING = (None, "", "???")
_SHOWN = 5  # bad paths quoted in one error message


class UnreadableImageError(ConfigError):
    """An image file that cannot be read or decoded; the message names the file."""


# --- decoding -------------------------------------------------------------------------------


def decode_pil(data: bytes | bytearray) -> torch.Tensor:
    """PIL decode to a uint8 RGB tensor 3×H×W (alpha dropped, 16-bit scaled to 8)."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode in _SIXTEEN_BIT_MODES:
            # convert("RGB") would clip 16-bit values at 255; keep the high byte like torchvision.
            high = (np.asarray(img).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
            img = Image.fromarray(high)
        return pil_to_tensor(img.convert("RGB"))


def decode_torchvision(data: bytes | bytearray) -> torch.Tensor:
    """torchvision.io decode to a uint8 RGB tensor 3×H×W (alpha dropped, 16-bit scaled to 8)."""
    buffer = torch.frombuffer(
        data if isinstance(data, bytearray) else bytearray(data), dtype=torch.uint8
    )
    image = decode_image(buffer, mode=ImageReadMode.RGB)
    if image.dtype != torch.uint8:  # 16-bit PNGs decode to uint16
        image = to_dtype(image, torch.uint8, scale=True)
    return image


def _read_bytes(path: str) -> bytearray:
    with open(path, "rb") as f:
        data = bytearray(os.fstat(f.fileno()).st_size)
        n = f.readinto(data)
    return data if n == len(data) else data[:n]


def check_image(path: str, level: str = "decode") -> str | None:
    """Why ``path`` cannot be decoded, or None when it can. ``decode``: a full PIL decode
    (JPEGs at 1/8 scale: the whole entropy-coded stream is still read, the IDCT is cheaper),
    truncation refused by the caller; ``header``: ``Image.open`` + ``verify()`` (PNG checksums,
    but truncated JPEGs pass). Safe on any bytes: PIL raises where torchvision's libpng may crash.
    """
    try:
        with Image.open(path) as img:
            if level == "header":
                img.verify()
            else:
                img.draft("RGB", (1, 1))  # a no-op for PNG
                img.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad data
        return f"{type(exc).__name__}: {exc}"
    return None


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
        if decoder not in DECODERS:
            raise ConfigError(f"dataset.decoder={decoder}: choose one of {', '.join(DECODERS)}")
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
            image = self._decode(_read_bytes(path), path)
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


def drop_from_page_cache(paths: Iterable[str]) -> int:
    """``posix_fadvise(DONTNEED)`` each file; return how many were advised (missing: skipped)."""
    dropped = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            log.warning("cannot open %s to drop it from the page cache: %s", path, exc)
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            dropped += 1
        finally:
            os.close(fd)
    return dropped


# --- scanning and building ------------------------------------------------------------------


@dataclass
class _Split:
    files: list[str] = field(default_factory=list)  # relative to root
    labels: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


@dataclass
class _Scan:
    classes: list[str]
    per_class: dict[str, list[list[tuple[str, int]]]]  # split -> class index -> (path, size)
    ignored: int = 0
    empty: list[str] = field(default_factory=list)  # class folders with no image file


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _subdirs(path: str) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _walk_class(root: str, class_dir: str) -> tuple[list[tuple[str, int]], int]:
    """Image files under ``class_dir`` (recursively; relative path, size) and ignored files."""
    images: list[tuple[str, int]] = []
    ignored = 0
    stack = [class_dir]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file() and _is_image(entry.name):
                    images.append((os.path.relpath(entry.path, root), entry.stat().st_size))
                else:
                    ignored += 1
    images.sort()
    return images, ignored


def _scan(root: str, splits: dict[str, str]) -> _Scan:
    """Class folders of each split dir (``split -> dir``); classes come from the first split."""
    first = next(iter(splits))
    classes = _subdirs(splits[first])
    if not classes:
        raise ConfigError(
            f"{splits[first]}: no class folders; expected <class>/<image>.jpg|.png under it "
            "(scripts/make_imagefolder.py writes an example)"
        )
    scan = _Scan(classes=classes, per_class={})
    for split, split_dir in splits.items():
        names = _subdirs(split_dir)
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise ConfigError(
                f"{split_dir}: class folders {', '.join(unknown)} are not in "
                f"{splits[first]}; the splits must share their class folders"
            )
        missing = sorted(set(classes) - set(names))
        if missing:
            log.warning("%s has no folder for classes %s", split_dir, ", ".join(missing))
        scan.per_class[split] = []
        for name in classes:
            class_dir = os.path.join(split_dir, name)
            images, ignored = _walk_class(root, class_dir) if name in names else ([], 0)
            scan.ignored += ignored
            if name in names and not images:
                scan.empty.append(class_dir)
            scan.per_class[split].append(images)
    return scan


def _split_by_fraction(
    per_class: list[list[tuple[str, int]]], classes: list[str], val_fraction: float, seed: int
) -> dict[str, list[list[tuple[str, int]]]]:
    """Stratified split: ``round(n * val_fraction)`` files of each class (at least 1 of a class
    with 2 or more) go to val, chosen by a generator seeded from ``(seed, class name)`` (the
    name, not the index: adding a class folder leaves the other classes' splits as they were)."""
    train: list[list[tuple[str, int]]] = []
    val: list[list[tuple[str, int]]] = []
    for name, images in zip(classes, per_class, strict=True):
        n = len(images)
        n_val = min(max(round(n * val_fraction), 1), n - 1) if n >= 2 else 0
        digest = hashlib.sha256(f"{seed}:{name}".encode("utf-8", "surrogateescape")).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        chosen = set(rng.permutation(n)[:n_val].tolist())
        val.append([f for i, f in enumerate(images) if i in chosen])
        train.append([f for i, f in enumerate(images) if i not in chosen])
    return {"train": train, "val": val}


# Mean file size from which the check runs in threads. Below it the per-file Python work of
# Image.open dominates and threads only contend for the GIL (2,000 64x64 JPEGs of 3 KB: 0.25 s
# serial, 0.3-0.45 s in 2-8 threads); above it decoding dominates and Pillow releases the GIL
# (1,000 320x320 JPEGs of 38 KB: 0.5 s serial, 0.3 s in 4 threads on 2 cores).
_THREADED_MEAN_BYTES = 20_000


def _verify(paths: list[str], sizes: list[int], level: str) -> dict[str, str]:
    """``path -> reason`` for every file ``check_image`` refuses."""
    check = functools.partial(check_image, level=level)
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, whatever the caller set
    try:
        if paths and sum(sizes) / len(sizes) >= _THREADED_MEAN_BYTES:
            with ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4)) as pool:
                reasons = list(pool.map(check, paths, chunksize=64))
        else:
            reasons = [check(p) for p in paths]
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    return {p: r for p, r in zip(paths, reasons, strict=True) if r is not None}


def _listing(paths: Sequence[str], limit: int = _SHOWN) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def _validate(
    root: Any, decoder: str, val_fraction: float, image_size: int, read_latency_ms: float,
    cold_cache: bool, on_error: str, verify: str, num_classes: int | None,
) -> str:  # fmt: skip
    if root in _MISSING:
        raise ConfigError(
            "dataset.root is required: pass dataset.root=/path/to/images (class folders, or "
            "train/ and val/ of class folders); scripts/make_imagefolder.py writes one"
        )
    path = os.path.abspath(os.path.expanduser(str(root)))
    if not os.path.isdir(path):
        what = "is not a directory" if os.path.exists(path) else "does not exist"
        raise ConfigError(f"dataset.root={root}: {path} {what}; pass the folder of class folders")
    if decoder not in DECODERS:
        raise ConfigError(f"dataset.decoder={decoder}: choose one of {', '.join(DECODERS)}")
    if on_error not in ON_ERROR:
        raise ConfigError(f"dataset.on_error={on_error}: choose one of {', '.join(ON_ERROR)}")
    if verify not in VERIFY:
        raise ConfigError(f"dataset.verify={verify}: choose one of {', '.join(VERIFY)}")
    if verify == "none" and on_error == "skip":
        raise ConfigError(
            "dataset.on_error=skip needs the files checked when the dataset is built; pass "
            "dataset.verify=decode (or header), or dataset.on_error=raise"
        )
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction={val_fraction}: must be between 0 and 1, e.g. 0.2")
    if image_size < 1:
        raise ConfigError(f"dataset.image_size={image_size}: must be at least 1, e.g. 64")
    if read_latency_ms < 0:
        raise ConfigError(f"dataset.read_latency_ms={read_latency_ms}: must be 0 or more")
    if cold_cache and not hasattr(os, "posix_fadvise"):
        raise ConfigError(
            "dataset.cold_cache=true needs os.posix_fadvise, which this platform lacks (it is "
            "Linux's); pass dataset.cold_cache=false"
        )
    if num_classes is not None and num_classes < 1:
        raise ConfigError(f"dataset.num_classes={num_classes}: pass null to count the folders")
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
    ``empty_classes``, ``verify_s``.
    """
    path = _validate(
        root, decoder, val_fraction, image_size, read_latency_ms, cold_cache, on_error, verify,
        num_classes,
    )  # fmt: skip
    train_dir, val_dir = os.path.join(path, "train"), os.path.join(path, "val")
    has_train, has_val = os.path.isdir(train_dir), os.path.isdir(val_dir)
    if has_train != has_val:
        present, absent = (train_dir, val_dir) if has_train else (val_dir, train_dir)
        raise ConfigError(
            f"dataset.root={root}: {present} exists but {absent} does not; add it, or put the "
            "class folders directly under the root to split them by dataset.val_fraction"
        )
    split_layout = has_train and has_val
    if split_layout:
        scan = _scan(path, {"train": train_dir, "val": val_dir})
        per_split = scan.per_class
        layout = "train/val"
    else:
        scan = _scan(path, {"all": path})
        per_split = _split_by_fraction(scan.per_class["all"], scan.classes, val_fraction, seed)
        layout = f"split:val_fraction={val_fraction},seed={seed}"

    n_classes = len(scan.classes)
    if num_classes is not None and num_classes != n_classes:
        raise ConfigError(
            f"dataset.num_classes={num_classes}, but {path} has {n_classes} class folders "
            f"({_listing(scan.classes, 10)}); pass dataset.num_classes={n_classes} or null"
        )
    if scan.empty and on_error == "raise":
        raise ConfigError(
            f"class folders with no image (.jpg, .jpeg, .png): {_listing(scan.empty)}; add "
            "images or remove the folders (dataset.on_error=skip keeps them as empty classes)"
        )
    candidates = [item for split in per_split.values() for images in split for item in images]
    t0 = time.perf_counter()
    bad: dict[str, str] = {}
    if verify != "none":
        paths = [os.path.join(path, f) for f, _ in candidates]
        bad = _verify(paths, [size for _, size in candidates], verify)
        log.info(
            "checked %d image files under %s in %.2f s", len(paths), path, time.perf_counter() - t0
        )
    elif decoder == "torchvision":
        log.warning("dataset.verify=none: a corrupt PNG can crash torchvision's decoder (SIGSEGV)")
    verify_s = time.perf_counter() - t0
    if bad and on_error == "raise":
        shown = [f"{p} ({r})" for p, r in list(bad.items())[:_SHOWN]]
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise ConfigError(
            f"{len(bad)} image file(s) cannot be decoded: {'; '.join(shown)}{more}; fix or "
            "remove them, or pass dataset.on_error=skip to leave them out"
        )
    if bad:
        log.warning("skipping %d undecodable image file(s): %s", len(bad), _listing(list(bad)))

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
                f"dataset.root={root}: the {split_name} split has no readable image (.jpg, "
                ".jpeg, .png); add images"
                + ("" if split_layout else " or raise dataset.val_fraction")
            )

    if scan.ignored:
        log.info("ignored %d non-image files under %s", scan.ignored, path)

    common = dict(
        root=path,
        classes=scan.classes,
        decoder=decoder,
        read_latency_ms=read_latency_ms,
        verified=verify == "decode",
    )
    train = ImageFolderDataset(
        files=splits["train"].files, labels=splits["train"].labels, cold_cache=cold_cache, **common
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


# --- writing an image folder ----------------------------------------------------------------

FORMATS = {"jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png")}


@dataclass
class WriteSummary:
    """What :func:`write_imagefolder` wrote."""

    root: str
    files: dict[str, int]  # split -> images written
    bytes: int
    seconds: float
    classes: list[str]


def _write_chunk(task: tuple[str, str, int, int, dict[str, Any], str, int]) -> tuple[int, set[str]]:
    """Write shapes samples ``start:stop`` of one split; return (bytes, class names used)."""
    from loaderbench.data.shapes import SHAPES, ShapesDataset

    out, split, start, stop, shapes_kwargs, image_format, quality = task
    dataset = ShapesDataset(split=split, **shapes_kwargs)
    pil_format, ext = FORMATS[image_format]
    save_kwargs = {"quality": quality} if pil_format == "JPEG" else {}
    made: set[str] = set()
    written = 0
    for index in range(start, stop):
        image, label = dataset[index]
        name = SHAPES[label]
        class_dir = os.path.join(out, split, name)
        if name not in made:
            os.makedirs(class_dir, exist_ok=True)
            made.add(name)
        path = os.path.join(class_dir, f"{index:07d}{ext}")
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, pil_format, **save_kwargs)
        written += os.path.getsize(path)
    return written, made


def write_imagefolder(
    out: str,
    *,
    count: int,
    val_count: int,
    image_size: int = 64,
    num_classes: int = 6,
    image_format: str = "jpeg",
    quality: int = 90,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
) -> WriteSummary:
    """Write the procedural shapes dataset as ``out/{train,val}/<shape>/<index>.jpg|.png``.

    The pixels are those of ``make_shapes`` with the same arguments (before compression), so
    ``dataset=imagefolder`` on the result is the default workload plus file reads and decoding.
    Chunks are written by ``workers`` processes (default: all cores). Ends with ``os.sync()`` so
    the new files are clean pages that ``cold_cache`` can drop.
    """
    if image_format not in FORMATS:
        raise ConfigError(f"image format {image_format!r}: choose one of {', '.join(FORMATS)}")
    if count < 1 or val_count < 1:
        raise ConfigError(f"count={count}, val_count={val_count}: both must be at least 1")
    if not 1 <= quality <= 100:
        raise ConfigError(f"quality={quality}: JPEG quality is 1 to 100 (e.g. 90)")
    out = os.path.abspath(os.path.expanduser(out))
    for split in ("train", "val"):
        split_dir = os.path.join(out, split)
        if os.path.exists(split_dir):
            if not overwrite:
                raise FileExistsError(f"{split_dir} exists; choose another output or overwrite it")
            shutil.rmtree(split_dir)
    # Validate the shapes arguments once, here, rather than in every worker.
    shapes_kwargs = dict(image_size=image_size, num_classes=num_classes, seed=seed)
    from loaderbench.data.shapes import ShapesDataset

    ShapesDataset(size=1, split="train", **shapes_kwargs)

    t0 = time.perf_counter()
    chunk = 256
    tasks = [
        (
            out,
            split,
            start,
            min(start + chunk, n),
            {**shapes_kwargs, "size": n},
            image_format,
            quality,
        )
        for split, n in (("train", count), ("val", val_count))
        for start in range(0, n, chunk)
    ]
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_write_chunk, tasks))
    else:
        results = [_write_chunk(task) for task in tasks]
    if hasattr(os, "sync"):
        os.sync()
    classes = sorted(set().union(*(made for _, made in results)))
    return WriteSummary(
        root=out,
        files={"train": count, "val": val_count},
        bytes=sum(n for n, _ in results),
        seconds=time.perf_counter() - t0,
        classes=classes,
    )
