"""Write tar shards (``python -m loaderbench.make_shards``): the shapes, or any image folder.

From the shapes, the pixels are those of ``dataset=shapes`` with the same size, classes and seed
(before JPEG compression); ``dataset=shards`` with ``root=null`` writes them here once. From a
folder (``dataset=imagefolder``'s layouts; every file is checked), the files' bytes are stored
unchanged.
"""

from __future__ import annotations

import inspect
import os
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from loaderbench.config import ConfigError
from loaderbench.data.imagefolder import make_imagefolder
from loaderbench.data.imagefolder.write import (
    FORMATS,
    WriteSummary,
    check_format,
    encode,
    prepare_out,
    run_tasks,
    write_imagefolder,
)
from loaderbench.data.shapes import SHAPES, ShapesDataset
from loaderbench.data.shards.tar import write_shard
from loaderbench.data.storage import read_bytes


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
    check_format(a.image_format, a.quality, a.count, a.val_count)
    if per_shard < 1:
        raise ConfigError(f"per_shard={per_shard}: a shard holds at least 1 sample")
    out = prepare_out(out, a.overwrite)
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
    results = run_tasks(_shapes_shard, tasks["train"] + tasks["val"], a.workers)
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
    out = prepare_out(out, overwrite)
    t0 = time.perf_counter()
    tasks: dict[str, list] = {}
    for split, data in (("train", pair.train), ("val", pair.val)):
        order = np.random.default_rng(seed).permutation(len(data))
        items = [(i, data.path(int(j)), int(data.labels[j])) for i, j in enumerate(order)]
        tasks[split] = [
            (path, items[a:b]) for path, a, b in _shard_tasks(out, split, len(items), per_shard)
        ]
    results = run_tasks(_file_shard, tasks["train"] + tasks["val"], workers)
    samples = {"train": len(pair.train), "val": len(pair.val)}
    return _summary(out, tasks, samples, results, t0, list(pair.train.classes))
