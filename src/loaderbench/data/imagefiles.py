"""Image files on disk: the scan of class folders, the decoders, the check of every file, and
page-cache control. :mod:`loaderbench.data.imagefolder` builds the dataset from these.

Files ending in .jpg, .jpeg or .png (any case) are images; other files are ignored and counted.

Decoders (both return a uint8 tensor 3×H×W, so ``transforms=none`` also collates equal-sized
images): ``pil`` is ``Image.open(...).convert("RGB")``; ``torchvision`` is
``torchvision.io.decode_image(..., mode=RGB)`` (libjpeg-turbo/libpng, no PIL object). Both turn
grayscale, palette, RGBA and CMYK into RGB with identical pixels: alpha is *dropped*, not
composited on a background; 16-bit PNGs are scaled to 8 bits (the high byte); EXIF orientation
is not applied.

The check (:func:`verify_files`): ``decode`` decodes every file once with PIL, truncated images
refused (JPEGs at 1/8 scale: the whole entropy-coded stream is read, the IDCT is cheap);
``Image.verify()`` alone is not enough, it passes truncated JPEGs. ``header`` is ``Image.open``
+ ``verify()``. Small files are checked serially (threads only fight over the GIL), large ones
in threads (Pillow releases the GIL while decoding). PIL checks the files for the
``torchvision`` decoder too: torchvision 0.29's libpng wrapper *crashes the process* (SIGSEGV)
on some corrupt PNGs instead of raising. Measured on 2,000 64×64 JPEGs (2.6 kB) on 2 busy
cores: ``decode`` takes 0.25 s warm, 0.6 s from a cold page cache, about 2.2× ``header`` (0.11
s / 0.4 s), a third of decoding them for training; a sweep pays it once per job. torchvision
0.29 deprecates its decoders in favour of TorchCodec (a DeprecationWarning per call, hidden
outside tests).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype

from loaderbench.config import ConfigError
from loaderbench.data.decoder_warnings import DecoderWarnings

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
SHOWN = 5  # bad paths quoted in one message


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


def read_bytes(path: str) -> bytearray:
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


# --- the page cache ----------------------------------------------------------------------


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


# --- scanning, splitting, checking -----------------------------------------------------------


@dataclass
class ClassScan:
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


def scan_classes(root: str, splits: dict[str, str]) -> ClassScan:
    """Class folders of each split dir (``split -> dir``); classes come from the first split."""
    first = next(iter(splits))
    classes = _subdirs(splits[first])
    if not classes:
        raise ConfigError(
            f"{splits[first]}: no class folders; expected <class>/<image>.jpg|.png under it "
            "(scripts/make_imagefolder.py writes an example)"
        )
    scan = ClassScan(classes=classes, per_class={})
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


def split_by_fraction(
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


def verify_files(paths: list[str], sizes: list[int], level: str) -> dict[str, str]:
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


def listing(paths: Sequence[str], limit: int = SHOWN) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def check_files(
    root: str,
    candidates: list[tuple[str, int]],
    *,
    level: str,
    decoder: str,
    on_error: str,
    warned: DecoderWarnings,
) -> tuple[dict[str, str], float]:
    """Check ``(relative path, size)`` files under ``root`` (``dataset.verify=level``); return
    ``path -> reason`` for the bad ones and the seconds taken. Bad files are a ConfigError naming
    them unless ``on_error == "skip"``; decoder warnings are counted in ``warned``, not shown."""
    t0 = time.perf_counter()
    bad: dict[str, str] = {}
    if level != "none":
        paths = [os.path.join(root, f) for f, _ in candidates]
        with warned.quiet():
            bad = verify_files(paths, [size for _, size in candidates], level)
        if warned.count:
            log.info(
                "silenced %d decoder warning(s) while checking (first: %s); pixels are unchanged",
                warned.count, warned.first,
            )  # fmt: skip
        log.info(
            "checked %d image files under %s in %.2f s", len(paths), root, time.perf_counter() - t0
        )
    elif decoder == "torchvision":
        log.warning("dataset.verify=none: a corrupt PNG can crash torchvision's decoder (SIGSEGV)")
    verify_s = time.perf_counter() - t0
    if bad and on_error == "raise":
        shown = [f"{p} ({r})" for p, r in list(bad.items())[:SHOWN]]
        more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise ConfigError(
            f"{len(bad)} image file(s) cannot be decoded: {'; '.join(shown)}{more}; fix or "
            "remove them, or pass dataset.on_error=skip to leave them out"
        )
    if bad:
        log.warning("skipping %d undecodable image file(s): %s", len(bad), listing(list(bad)))
    return bad, verify_s


def scan_layout(
    path: str, root: Any, val_fraction: float, seed: int
) -> tuple[ClassScan, dict[str, list[list[tuple[str, int]]]], str, bool]:
    """Scan ``path`` (``dataset.root=root``): the scan, the files per split and class, the
    layout's name, and whether the root has train/ and val/ folders."""
    train_dir, val_dir = os.path.join(path, "train"), os.path.join(path, "val")
    has_train, has_val = os.path.isdir(train_dir), os.path.isdir(val_dir)
    if has_train != has_val:
        present, absent = (train_dir, val_dir) if has_train else (val_dir, train_dir)
        raise ConfigError(
            f"dataset.root={root}: {present} exists but {absent} does not; add it, or put the "
            "class folders directly under the root to split them by dataset.val_fraction"
        )
    if has_train:
        scan = scan_classes(path, {"train": train_dir, "val": val_dir})
        return scan, scan.per_class, "train/val", True
    scan = scan_classes(path, {"all": path})
    per_split = split_by_fraction(scan.per_class["all"], scan.classes, val_fraction, seed)
    return scan, per_split, f"split:val_fraction={val_fraction},seed={seed}", False


@dataclass
class SplitFiles:
    files: list[str] = field(default_factory=list)  # relative to root
    labels: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


def keep_readable(
    scan: ClassScan, per_split: dict[str, list[list[tuple[str, int]]]], bad: dict, root: str
) -> tuple[list[str], list[str], set[str], dict[str, SplitFiles]]:
    """Leave out the ``bad`` files and the classes left with no training file; return the kept
    classes, the dropped ones, the class folders without a readable image, and the files of
    each split labelled 0..k-1 by kept class (see ``imagefolder``'s docstring)."""
    kept = {
        name: [[(f, n) for f, n in images if os.path.join(root, f) not in bad] for images in split]
        for name, split in per_split.items()
    }
    empty_classes = set(scan.empty) | {
        f"{name}/{scan.classes[label]}"
        for name, split in per_split.items()
        for label, images in enumerate(split)
        if images and not kept[name][label]
    }
    # A class with no readable training image (on_error=skip) is dropped: see the docstring.
    dropped = [c for c, images in zip(scan.classes, kept["train"], strict=True) if not images]
    classes = [c for c in scan.classes if c not in dropped]
    if dropped and classes:
        log.warning(
            "dropped class(es) %s: no readable training image; the dataset has the %d remaining "
            "classes, relabelled 0..%d in sorted order", listing(dropped, 10), len(classes),
            len(classes) - 1,
        )  # fmt: skip
    splits: dict[str, SplitFiles] = {name: SplitFiles() for name in kept}
    for name, per_class in kept.items():
        split, label = splits[name], 0
        for c, images in zip(scan.classes, per_class, strict=True):
            if c in dropped:
                continue
            split.files += [f for f, _ in images]
            split.sizes += [n for _, n in images]
            split.labels += [label] * len(images)
            label += 1
    return classes, dropped, empty_classes, splits
