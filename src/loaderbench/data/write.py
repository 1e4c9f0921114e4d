"""Write the procedural shapes dataset to disk as an image folder
(``python -m loaderbench.make_imagefolder``) or as tar shards (``python -m
loaderbench.make_shards``, which also shards any image folder).

The pixels are those of ``dataset=shapes`` with the same size, classes and seed (before JPEG
compression), so ``dataset=imagefolder`` or ``dataset=shapes`` on the result differs from the
default workload only by reading and decoding files.
"""

from __future__ import annotations

import inspect
import io
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image

from loaderbench.config import ConfigError
from loaderbench.data.imagefolder import make_imagefolder
from loaderbench.data.shapes import SHAPES, ShapesDataset
from loaderbench.data.shards.tar import write_shard
from loaderbench.data.storage import read_bytes

FORMATS = {"jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png")}


@dataclass
class WriteSummary:
    """What :func:`write_imagefolder` wrote."""

    root: str
    files: dict[str, int]  # split -> images written
    bytes: int
    seconds: float
    classes: list[str]
    samples: dict[str, int] = field(default_factory=dict)  # split -> samples (shards: in files)


def encode(image: torch.Tensor, image_format: str, quality: int) -> bytes:
    """A uint8 3×H×W tensor as JPEG or PNG bytes."""
    pil_format = FORMATS[image_format][0]
    out = io.BytesIO()
    save_kwargs = {"quality": quality} if pil_format == "JPEG" else {}
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(out, pil_format, **save_kwargs)
    return out.getvalue()


def _write_chunk(task: tuple[str, str, int, int, dict[str, Any], str, int]) -> tuple[int, set[str]]:
    """Write shapes samples ``start:stop`` of one split; return (bytes, class names used)."""
    out, split, start, stop, shapes_kwargs, image_format, quality = task
    dataset = ShapesDataset(split=split, **shapes_kwargs)
    made: set[str] = set()
    written = 0
    for index in range(start, stop):
        image, label = dataset[index]
        name = SHAPES[label]
        class_dir = os.path.join(out, split, name)
        if name not in made:
            os.makedirs(class_dir, exist_ok=True)
            made.add(name)
        data = encode(image, image_format, quality)
        with open(os.path.join(class_dir, f"{index:07d}{FORMATS[image_format][1]}"), "wb") as f:
            f.write(data)
        written += len(data)
    return written, made


def _check_format(image_format: str, quality: int, count: int, val_count: int) -> None:
    if image_format not in FORMATS:
        raise ConfigError(f"image format {image_format!r}: choose one of {', '.join(FORMATS)}")
    if count < 1 or val_count < 1:
        raise ConfigError(f"count={count}, val_count={val_count}: both must be at least 1")
    if not 1 <= quality <= 100:
        raise ConfigError(f"quality={quality}: JPEG quality is 1 to 100 (e.g. 90)")


def _run(fn: Callable[[Any], Any], tasks: list[Any], workers: int | None) -> list[Any]:
    """``fn`` over ``tasks`` in ``workers`` processes (default: all cores)."""
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(fn, tasks))
    return [fn(task) for task in tasks]


def _prepare(out: str, overwrite: bool) -> str:
    out = os.path.abspath(os.path.expanduser(out))
    for split in ("train", "val"):
        split_dir = os.path.join(out, split)
        if os.path.exists(split_dir):
            if not overwrite:
                raise FileExistsError(f"{split_dir} exists; choose another output or overwrite it")
            shutil.rmtree(split_dir)
    return out


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
    _check_format(image_format, quality, count, val_count)
    out = _prepare(out, overwrite)
    # Validate the shapes arguments once, here, rather than in every worker.
    shapes_kwargs = dict(image_size=image_size, num_classes=num_classes, seed=seed)
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
    results = _run(_write_chunk, tasks, workers)
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


# --- tar shards -----------------------------------------------------------------------------


def _shapes_shard(
    task: tuple[str, str, int, int, dict[str, Any], str, int],
) -> tuple[int, set[int]]:
    """Write shapes samples ``start:stop`` of one split as one shard (keys: the sample index)."""
    path, split, start, stop, shapes_kwargs, image_format, quality = task
    dataset = ShapesDataset(split=split, **shapes_kwargs)
    ext = FORMATS[image_format][1][1:]
    labels: set[int] = set()

    def samples():
        for index in range(start, stop):
            image, label = dataset[index]
            labels.add(label)
            yield f"{index:08d}", encode(image, image_format, quality), ext, label

    return write_shard(path, samples()), labels


def _file_shard(task: tuple[str, list[tuple[int, str, int]]]) -> tuple[int, set[int]]:
    """Write ``(index, file, label)`` image files as one shard, their bytes as they are."""
    path, items = task
    samples = (
        (f"{i:08d}", bytes(read_bytes(f)), os.path.splitext(f)[1][1:].lower(), label)
        for i, f, label in items
    )
    return write_shard(path, samples), {label for _, _, label in items}


def _shard_tasks(out: str, split: str, n: int, per_shard: int) -> list[tuple[str, int, int]]:
    os.makedirs(os.path.join(out, split), exist_ok=True)
    return [
        (os.path.join(out, split, f"shard-{k:06d}.tar"), start, min(start + per_shard, n))
        for k, start in enumerate(range(0, n, per_shard))
    ]


def _summary(
    out: str, tasks: dict[str, list], samples: dict[str, int], results: list, t0: float,
    classes: list[str],
) -> WriteSummary:  # fmt: skip
    if hasattr(os, "sync"):
        os.sync()  # clean pages, which cold_cache can drop
    return WriteSummary(
        root=out,
        files={split: len(t) for split, t in tasks.items()},
        bytes=sum(n for n, _ in results),
        seconds=time.perf_counter() - t0,
        classes=classes,
        samples=samples,
    )


def write_shards(out: str, *, per_shard: int = 512, **shapes: Any) -> WriteSummary:
    """The shapes dataset as ``out/{train,val}/shard-NNNNNN.tar`` of ``per_shard`` samples
    (WebDataset layout: ``KEY.jpg`` + ``KEY.cls``; the key is the sample's index). ``shapes``:
    the keyword arguments of :func:`write_imagefolder`, with its defaults. ``files`` of the
    summary counts shards. Shards are written by ``workers`` processes."""
    bound = inspect.signature(write_imagefolder).bind(out, **shapes)
    bound.apply_defaults()
    a = SimpleNamespace(**bound.arguments)
    _check_format(a.image_format, a.quality, a.count, a.val_count)
    if per_shard < 1:
        raise ConfigError(f"per_shard={per_shard}: a shard holds at least 1 sample")
    out = _prepare(out, a.overwrite)
    shapes_kwargs = dict(image_size=a.image_size, num_classes=a.num_classes, seed=a.seed)
    ShapesDataset(size=1, split="train", **shapes_kwargs)  # validate once, here
    t0 = time.perf_counter()
    tasks = {
        split: [
            (path, split, start, stop, {**shapes_kwargs, "size": n}, a.image_format, a.quality)
            for path, start, stop in _shard_tasks(out, split, n, per_shard)
        ]
        for split, n in (("train", a.count), ("val", a.val_count))
    }
    results = _run(_shapes_shard, tasks["train"] + tasks["val"], a.workers)
    samples = {"train": a.count, "val": a.val_count}
    names = [SHAPES[i] for i in sorted(set().union(*(labels for _, labels in results)))]
    return _summary(out, tasks, samples, results, t0, names)


def shard_imagefolder(
    out: str,
    root: str,
    *,
    per_shard: int = 512,
    val_fraction: float = 0.2,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
) -> WriteSummary:
    """Any image folder (``dataset=imagefolder``'s layouts, every file checked) as shards. The
    files' bytes are stored as they are, in an order shuffled by ``seed``: a folder is sorted by
    class, and a shuffle buffer cannot mix classes that sit in different shards."""
    pair = make_imagefolder(root=root, val_fraction=val_fraction, seed=seed)
    out = _prepare(out, overwrite)
    t0 = time.perf_counter()
    tasks: dict[str, list] = {}
    for split, data in (("train", pair.train), ("val", pair.val)):
        order = np.random.default_rng(seed).permutation(len(data))
        items = [(i, data.path(int(j)), int(data.labels[j])) for i, j in enumerate(order)]
        tasks[split] = [
            (path, items[a:b]) for path, a, b in _shard_tasks(out, split, len(items), per_shard)
        ]
    results = _run(_file_shard, tasks["train"] + tasks["val"], workers)
    samples = {"train": len(pair.train), "val": len(pair.val)}
    return _summary(out, tasks, samples, results, t0, list(pair.train.classes))
