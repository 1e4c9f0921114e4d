"""The image folder's files: the scan of class folders, the split, and the files kept.

Files ending in .jpg, .jpeg or .png (any case) are images; other files are ignored and counted.
Hidden files and folders (a leading dot) are skipped. Classes are the sorted folder names of
the train split (or of the root, split by ``val_fraction``); a class's images are found
recursively under its folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loaderbench.config import ConfigError
from loaderbench.data.decode import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

SHOWN = 5  # bad paths quoted in one message


def listing(paths: Sequence[str], limit: int = SHOWN) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


@dataclass
class ClassScan:
    classes: list[str]
    per_class: dict[str, list[list[tuple[str, int]]]]  # split -> class index -> (path, size)
    ignored: int = 0
    empty: list[str] = field(default_factory=list)  # class folders with no image file


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1][1:].lower() in IMAGE_EXTENSIONS


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
            "(python -m loaderbench.make_imagefolder writes an example)"
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
