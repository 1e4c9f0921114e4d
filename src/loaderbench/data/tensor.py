"""Generated datasets with no decoding: the in-memory tensor workload and torchvision's FakeData.

``make_tensor`` is the workload of the common "num_workers=0 is enough" advice: every image is
already a float32 tensor in memory, so loading is indexing and collating. It is the one dataset
that holds its samples (by design): a forked worker shares the pages, a spawned worker receives
the tensors through shared memory (torch moves their storage to /dev/shm, which must be large
enough). The memory is checked before anything is allocated; what does not fit runs with
``storage=mmap``, the same numbers read from a file (:mod:`loaderbench.data.tensorfile`).

The images are learnable, not pure noise: each class adds its own per-channel mean offset to
standard normal noise, so a model that pools over the image separates the classes and accuracy
rises above chance (the noise keeps each pixel uninformative on its own).

``make_fake`` is torchvision's FakeData (PIL images of noise, random labels: accuracy stays at
chance) for exercising a pipeline with a PIL decode-free source; it needs a transforms preset
that turns PIL images into tensors (``basic``, ``augment``, ``heavy``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any

import numpy as np
import psutil
import torch
from torch.utils.data import TensorDataset
from torchvision.datasets import FakeData
from torchvision.transforms import ToPILImage

from loaderbench.config import ConfigError
from loaderbench.data.base import DatasetPair, sample_seed
from loaderbench.data.checks import check_choice, check_sizes, check_storage
from loaderbench.data.tensorfile import (
    MappedImages,
    check_disk,
    labels_path_of,
    open_user_file,
    write_generated,
)

log = logging.getLogger(__name__)

MEMORY_FRACTION = 0.8  # of the available memory the tensors may take; the rest is headroom
CLASS_OFFSET_SCALE = 0.5  # std of the per-class, per-channel mean offsets (noise std is 1)
_GB = 1e9


def _fingerprint(kind: str, **params: Any) -> str:
    ident = kind + ":" + ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{kind}-" + hashlib.sha256(ident.encode()).hexdigest()[:16]


def tensor_bytes(n: int, image_size: int) -> int:
    """Bytes of ``n`` float32 images 3×image_size×image_size plus their int64 labels."""
    return n * (3 * image_size * image_size * 4 + 8)


def check_memory(*, size: int, val_size: int, image_size: int) -> int:
    """Raise ConfigError when the tensors would not fit in the available memory; return the
    estimated bytes. Nothing is allocated here."""
    need = tensor_bytes(size + val_size, image_size)
    available = psutil.virtual_memory().available
    usable = int(available * MEMORY_FRACTION)
    if need <= usable:
        return need
    most = usable // tensor_bytes(1, image_size) - val_size
    lower = (
        f"lower dataset.size (at most ~{most} here) or dataset.image_size"
        if most >= 1
        else "lower dataset.image_size or dataset.val_size"
    )
    fix = (
        "pass dataset.storage=mmap (the same tensor written once to an .npy file and read "
        f"through a memory map: RAM stays bounded), or {lower}"
    )
    raise ConfigError(
        f"dataset.size={size} + dataset.val_size={val_size} images of "
        f"3×{image_size}×{image_size} float32 need {need / _GB:.1f} GB; "
        f"{available / _GB:.1f} GB is available ({MEMORY_FRACTION:.0%} of it usable); {fix}"
    )


def _generator(seed: int, num_classes: int) -> tuple[torch.Generator, torch.Tensor]:
    g = torch.Generator().manual_seed(sample_seed(seed, -5, 0))
    return g, torch.randn(num_classes, 3, generator=g) * CLASS_OFFSET_SCALE


def _make_mapped(
    *, size: int, val_size: int, image_size: int, num_classes: int, seed: int,
    path: str | None, labels_path: str | None, cache_dir: str, options: dict[str, Any],
) -> DatasetPair:  # fmt: skip
    """``make_tensor`` with ``storage=mmap``: your ``path``, or the generated file (written
    once into ``cache_dir``)."""
    params = dict(
        size=size, val_size=val_size, image_size=image_size, classes=num_classes, seed=seed
    )
    if path:
        labels, fingerprint = open_user_file(path, labels_path, size=size, val_size=val_size)
        if (top := int(labels[: size + val_size].max())) >= num_classes:
            raise ConfigError(
                f"dataset.num_classes={num_classes}, but the labels hold {top}; pass "
                f"dataset.num_classes={top + 1}"
            )
    else:
        fingerprint = _fingerprint("tensor", **params)  # the same numbers as in memory
        path = os.path.join(cache_dir, f"{fingerprint}.npy")
        if not os.path.isfile(path):
            need = tensor_bytes(size + val_size, image_size)
            check_disk(cache_dir, need)
            t0 = time.perf_counter()
            g, offsets = _generator(seed, num_classes)
            write_generated(
                path, counts=(size, val_size), image_size=image_size,
                num_classes=num_classes, generator=g, offsets=offsets,
            )  # fmt: skip
            log.info(
                "wrote %d + %d tensor images (%.2f GB) to %s in %.1f s",
                size, val_size, need / _GB, path, time.perf_counter() - t0,
            )  # fmt: skip
        labels = np.load(labels_path_of(path))
    train = MappedImages(path, labels[:size], start=0, n=size, **options)
    val_options = {**options, "cold_cache": False}
    val = MappedImages(path, labels[size : size + val_size], start=size, n=val_size, **val_options)
    return DatasetPair(
        train=train,
        val=val,
        num_classes=num_classes,
        fingerprint=fingerprint,
        stats={"file_gb": os.path.getsize(path) / _GB},
    )


def _images(
    n: int, labels: torch.Tensor, offsets: torch.Tensor, image_size: int, g: torch.Generator
) -> torch.Tensor:
    """Noise plus the class offsets, written in place: no temporary the size of the data."""
    images = torch.empty(n, 3, image_size, image_size)
    torch.randn(images.shape, generator=g, out=images)
    images.add_(offsets[labels].view(n, 3, 1, 1))
    return images


STORAGE = ("memory", "mmap")


def make_tensor(
    *,
    size: int,
    val_size: int,
    image_size: int,
    num_classes: int = 10,
    seed: int,
    storage: str = "memory",
    path: str | None = None,
    labels_path: str | None = None,
    cache_dir: str = "outputs/cache",
    read_latency_ms: float = 0.0,
    cold_cache: bool = False,
) -> DatasetPair:
    """Float32 images 3×H×W and int64 labels: in-memory ``TensorDataset`` splits, or with
    ``storage=mmap`` the same numbers read through a memory map (see ``tensorfile``).

    Generated from an explicit ``torch.Generator`` seeded by ``seed`` (the global generator,
    which initialises the model, is not touched).
    """
    check_sizes(size=size, val_size=val_size, image_size=image_size, num_classes=num_classes)
    check_choice("storage", storage, STORAGE)
    if storage == "mmap":
        check_storage(read_latency_ms, cold_cache)
        return _make_mapped(
            size=size, val_size=val_size, image_size=image_size, num_classes=num_classes,
            seed=seed, path=path, labels_path=labels_path, cache_dir=cache_dir,
            options=dict(read_latency_ms=read_latency_ms, cold_cache=cold_cache),
        )  # fmt: skip
    file_only = dict(path=path, labels_path=labels_path, read_latency_ms=read_latency_ms or None)
    for key, value in (*file_only.items(), ("cold_cache", cold_cache or None)):
        if value is not None:  # a file's knob on data in RAM would be recorded but do nothing
            why = "applies to dataset.storage=mmap only"
            raise ConfigError(f"dataset.{key}={value}: {why}; pass dataset.storage=mmap too")
    need = check_memory(size=size, val_size=val_size, image_size=image_size)
    g, offsets = _generator(seed, num_classes)
    splits = []
    for n in (size, val_size):
        labels = torch.randint(num_classes, (n,), generator=g)
        splits.append(TensorDataset(_images(n, labels, offsets, image_size, g), labels))
    log.info("generated %d + %d tensor images (%.2f GB)", size, val_size, need / _GB)
    params = dict(
        size=size, val_size=val_size, image_size=image_size, classes=num_classes, seed=seed
    )
    return DatasetPair(
        train=splits[0],
        val=splits[1],
        num_classes=num_classes,
        fingerprint=_fingerprint("tensor", **params),
        stats={"memory_gb": need / _GB},
    )


class SeededFakeData(FakeData):
    """FakeData's samples, drawn from a private generator.

    torchvision's FakeData calls ``torch.manual_seed`` per sample and restores only the CPU
    state (the CUDA generators stay reseeded); the same seed in a private generator gives the
    very same pixels and labels without touching any global state.
    """

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__} index {index} out of range")
        g = torch.Generator().manual_seed(index + self.random_offset)
        img = ToPILImage()(torch.randn(*self.image_size, generator=g))
        target = int(
            torch.randint(0, self.num_classes, size=(1,), dtype=torch.long, generator=g)[0]
        )
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


def make_fake(
    *, size: int, val_size: int, image_size: int, num_classes: int = 10, seed: int
) -> DatasetPair:
    """torchvision FakeData splits (PIL RGB images); val's seeds follow train's, so they differ."""
    check_sizes(size=size, val_size=val_size, image_size=image_size, num_classes=num_classes)
    offset = sample_seed(seed, -4, 0) >> 2  # leaves room below 2**63 for offset + index
    shape = (3, image_size, image_size)
    params = dict(
        size=size, val_size=val_size, image_size=image_size, classes=num_classes, seed=seed
    )
    return DatasetPair(
        train=SeededFakeData(size, shape, num_classes, random_offset=offset),
        val=SeededFakeData(val_size, shape, num_classes, random_offset=offset + size),
        num_classes=num_classes,
        fingerprint=_fingerprint("fake", **params),
    )
