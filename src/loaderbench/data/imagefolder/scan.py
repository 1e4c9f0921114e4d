"""The image folder's files: the scan of class folders, the split, and the files kept.

Files ending in .jpg, .jpeg or .png (any case) are images; other files are ignored and counted.
Hidden files and folders (a leading dot) are skipped. Classes are the sorted folder names of
the train split (or of the root, split by ``val_fraction``); a class's images are found
recursively under its folder.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loaderbench.config import ConfigError
from loaderbench.data.decode import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

SHOWN = 5  # bad paths quoted in one message


def printable(text: str) -> str:
    """``text`` with the bytes of a file name that is not valid UTF-8 (which Python reads as
    lone surrogates, ``surrogateescape``) written as ``\\xNN``: safe to print, log and record,
    where the raw name would fail to encode."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def listing(paths: Sequence[str], limit: int = SHOWN) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(printable(p) for p in paths[:limit]) + more


@dataclass
class ClassScan:
    classes: list[str]
    per_class: dict[str, list[list[tuple[str, int]]]]  # split -> class index -> (path, size)
    ignored: int = 0
    empty: list[str] = field(default_factory=list)  # class folders with no image file
    skipped_dirs: list[str] = field(default_factory=list)  # unreadable or looping (on_error=skip)


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1][1:].lower() in IMAGE_EXTENSIONS


def folder_problem(path: str, exc: OSError | None = None, can_skip: bool = True) -> str:
    """One line naming a folder that cannot be walked, and the fix (``exc`` None: a link that
    leads back to a folder above it)."""
    shown = printable(path)
    skip = "or pass dataset.on_error=skip to leave it out" if can_skip else "or pass another root"
    if exc is None or exc.errno == errno.ELOOP:
        return (
            f"{shown}: a symbolic link loop (it leads back to a folder above it); remove or fix "
            f"the link, {skip}"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{shown}: cannot read the folder (permission denied); chmod -R u+rX it, {skip}"
    return f"{shown}: cannot read it ({exc.strerror or exc}); fix it, {skip}"


class _Walk:
    """A folder walk that follows symbolic links, names each folder it cannot read or that
    loops, and with ``on_error=skip`` leaves it out and counts it instead."""

    def __init__(self, on_error: str, skipped: list[str]):
        self.on_error, self.skipped = on_error, skipped

    def problem(self, path: str, exc: OSError | None = None, required: bool = False) -> None:
        if required:  # the root or a split's folder: nothing is left to read without it
            raise ConfigError(folder_problem(path, exc, can_skip=False))
        if self.on_error != "skip":
            raise ConfigError(folder_problem(path, exc))
        self.skipped.append(path)
        log.warning("skipping %s", folder_problem(path, exc).split("; ")[0])

    def entries(self, path: str, required: bool = False) -> list[tuple[os.DirEntry, bool]]:
        """``(entry, is a folder)`` of a folder's visible entries; none if it cannot be read."""
        try:
            with os.scandir(path) as it:
                listed = [e for e in it if not e.name.startswith(".")]
        except OSError as exc:
            self.problem(path, exc, required)
            return []
        out = []
        for entry in listed:
            try:
                out.append((entry, entry.is_dir()))
            except OSError as exc:  # a link to itself: ELOOP on the stat
                self.problem(entry.path, exc)
        return out

    def subdirs(self, path: str) -> list[str]:
        """The class folders of a split's folder (which must be readable)."""
        return sorted(e.name for e, is_dir in self.entries(path, required=True) if is_dir)

    def images(self, root: str, class_dir: str) -> tuple[list[tuple[str, int]], int]:
        """Image files under ``class_dir`` (recursively; relative path, size) and ignored ones.
        A link to a folder it is in (``sub -> ..``, or to the root) is a loop, not walked."""
        images: list[tuple[str, int]] = []
        ignored = 0
        real = os.path.realpath(class_dir)
        chain = [real, *map(str, Path(real).parents)]  # every folder the class folder is in
        stats = [os.stat(d) for d in chain]
        stack = [(class_dir, frozenset((st.st_dev, st.st_ino) for st in stats))]
        while stack:
            folder, above = stack.pop()
            for entry, is_dir in self.entries(folder):
                if is_dir:
                    st = entry.stat()
                    if (st.st_dev, st.st_ino) in above:
                        self.problem(entry.path)
                    else:
                        stack.append((entry.path, above | {(st.st_dev, st.st_ino)}))
                elif entry.is_file() and _is_image(entry.name):
                    images.append((os.path.relpath(entry.path, root), entry.stat().st_size))
                else:
                    ignored += 1
        images.sort()
        return images, ignored


def scan_classes(root: str, splits: dict[str, str], on_error: str = "raise") -> ClassScan:
    """Class folders of each split dir (``split -> dir``); classes come from the first split."""
    first = next(iter(splits))
    scan = ClassScan(classes=[], per_class={})
    walk = _Walk(on_error, scan.skipped_dirs)
    classes = scan.classes = walk.subdirs(splits[first])
    if not classes:
        raise ConfigError(
            f"{printable(splits[first])}: no class folders; expected <class>/<image>.jpg|.png "
            "under it (python -m loaderbench.make_imagefolder writes an example)"
        )
    for split, split_dir in splits.items():
        names = walk.subdirs(split_dir)
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise ConfigError(
                f"{printable(split_dir)}: class folders {', '.join(map(printable, unknown))} "
                f"are not in {printable(splits[first])}; the splits must share their class folders"
            )
        missing = sorted(set(classes) - set(names))
        if missing:
            log.warning("%s has no folder for classes %s", printable(split_dir), listing(missing))
        scan.per_class[split] = []
        for name in classes:
            class_dir = os.path.join(split_dir, name)
            images, ignored = walk.images(root, class_dir) if name in names else ([], 0)
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
    path: str, root: Any, val_fraction: float, seed: int, on_error: str = "raise"
) -> tuple[ClassScan, dict[str, list[list[tuple[str, int]]]], str, bool]:
    """Scan ``path`` (``dataset.root=root``): the scan, the files per split and class, the
    layout's name, and whether the root has train/ and val/ folders. A folder that cannot be
    read or loops is a ConfigError naming it, or with ``on_error=skip`` left out and counted."""
    train_dir, val_dir = os.path.join(path, "train"), os.path.join(path, "val")
    has_train, has_val = os.path.isdir(train_dir), os.path.isdir(val_dir)
    if has_train != has_val:
        present, absent = (train_dir, val_dir) if has_train else (val_dir, train_dir)
        raise ConfigError(
            f"dataset.root={root}: {present} exists but {absent} does not; add it, or put the "
            "class folders directly under the root to split them by dataset.val_fraction"
        )
    if has_train:
        scan = scan_classes(path, {"train": train_dir, "val": val_dir}, on_error)
        return scan, scan.per_class, "train/val", True
    scan = scan_classes(path, {"all": path}, on_error)
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
