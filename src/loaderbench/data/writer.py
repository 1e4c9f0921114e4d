"""Write the procedural shapes dataset to disk as an image folder (``scripts/make_imagefolder.py``).

The pixels are those of ``dataset=shapes`` with the same size, classes and seed (before JPEG
compression), so ``dataset=imagefolder`` on the result differs from the default workload only by
reading and decoding files.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

from loaderbench.config import ConfigError
from loaderbench.data.shapes import SHAPES, ShapesDataset

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
