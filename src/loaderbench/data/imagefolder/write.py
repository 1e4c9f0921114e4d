"""Write the procedural shapes dataset to disk as an image folder (``python -m
loaderbench.make_imagefolder``), and what the shapes' writers share (the encoding, the output
folder, the worker processes, the summary; :mod:`loaderbench.data.shards.write` writes shards).

The pixels are those of ``dataset=shapes`` with the same size, classes and seed (before JPEG
compression), so ``dataset=imagefolder`` on the result differs from the default workload only
by reading and decoding files.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from loaderbench.config import ConfigError
from loaderbench.data.shapes import SHAPES, ShapesDataset

FORMATS = {"jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png")}


@dataclass
class WriteSummary:
    """What a writer wrote."""

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


def check_format(image_format: str, quality: int, count: int, val_count: int) -> None:
    if image_format not in FORMATS:
        raise ConfigError(f"image format {image_format!r}: choose one of {', '.join(FORMATS)}")
    if count < 1 or val_count < 1:
        raise ConfigError(f"count={count}, val_count={val_count}: both must be at least 1")
    if not 1 <= quality <= 100:
        raise ConfigError(f"quality={quality}: JPEG quality is 1 to 100 (e.g. 90)")


def run_tasks(fn: Callable[[Any], Any], tasks: list[Any], workers: int | None) -> list[Any]:
    """``fn`` over ``tasks`` in ``workers`` processes (default: all cores)."""
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(fn, tasks))
    return [fn(task) for task in tasks]


def prepare_out(out: str, overwrite: bool) -> str:
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
    check_format(image_format, quality, count, val_count)
    out = prepare_out(out, overwrite)
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
    results = run_tasks(_write_chunk, tasks, workers)
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
