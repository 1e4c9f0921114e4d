"""``dataset=tensor dataset.storage=mmap``: the tensor workload read from an ``.npy`` file through
a memory map, as users hold data larger than RAM.

The generated tensor is written once to ``cache_dir/tensor-<fingerprint>.npy`` (labels in
``.labels.npy``), in chunks drawn from the same generator, in the same order, as the in-memory
tensor: the numbers are identical, so ``storage`` changes where the data lives, not what is
trained. Writing never holds more than one chunk in RAM; reading maps the file, so its pages
are the page cache's: they count in RSS and PSS (shared between the processes that map them)
but not in anonymous memory (``memory/peak_anon_mb``). A forked worker inherits the mapping; a
spawned one reopens the file (only the path is pickled: a pickled ``np.memmap`` would copy the
whole array).

``dataset.path`` reads your own ``N×C×H×W`` ``.npy`` (float32 or uint8) instead: train is rows
``[0, size)``, val the next ``val_size`` rows; labels come from ``labels_path`` (default
``<path stem>.labels.npy``). ``read_latency_ms`` is paid once per sample read;
``cold_cache=true`` drops the file from the page cache before each epoch (and the main
process's mapped pages; persistent workers keep theirs).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from loaderbench.config import ConfigError
from loaderbench.data.pair import DatasetPair
from loaderbench.data.storage import GB, StoredFiles, check_disk
from loaderbench.data.tensor.memory import class_offsets, tensor_bytes, tensor_fingerprint

log = logging.getLogger(__name__)

CHUNK_IMAGES = 256  # a multiple of 16: torch.randn then draws exactly what one call would


class MappedImages(StoredFiles, Dataset):
    """Rows ``[start, start + n)`` of an ``N×C×H×W`` ``.npy`` and their labels: ``(image view,
    label)``. The image is a view of the mapped pages (copy-on-write: a transform that writes
    in place copies only what it writes); collation copies it into the batch."""

    def __init__(
        self,
        path: str,
        labels: np.ndarray,
        *,
        start: int,
        n: int,
        read_latency_ms: float = 0.0,
        cold_cache: bool = False,
    ):
        self.path, self.labels, self.start, self.n = path, labels, start, n
        StoredFiles.__init__(self, read_latency_ms=read_latency_ms, cold_cache=cold_cache)
        self._array: np.memmap | None = None

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # a spawned worker maps the file itself

    def array(self) -> np.memmap:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="c")
        return self._array

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.n:
            raise IndexError(index)
        self.wait_for_storage()
        return torch.from_numpy(self.array()[self.start + index]), int(self.labels[index])

    def stored_files(self) -> list[str]:
        return [self.path]

    def forget_mapped(self) -> None:
        """This process's mapped pages go first: the page cache cannot drop a page still mapped
        (a page mapped elsewhere, e.g. by a persistent worker, stays)."""
        if self._array is not None:
            self._array._mmap.madvise(mmap.MADV_DONTNEED)


def labels_path_of(path: str) -> str:
    return os.path.splitext(path)[0] + ".labels.npy"


def write_generated(
    path: str,
    *,
    counts: tuple[int, int],
    image_size: int,
    num_classes: int,
    generator: torch.Generator,
    offsets: torch.Tensor,
) -> None:
    """Write the train and val images (rows in that order) and labels of ``make_tensor``, drawn
    from ``generator`` in its order: labels of a split, then its images, chunk by chunk."""
    shape = (sum(counts), 3, image_size, image_size)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        all_labels, row = [], 0
        for n in counts:
            labels = torch.randint(num_classes, (n,), generator=generator)
            all_labels.append(labels)
            for a in range(0, n, CHUNK_IMAGES):
                b = min(a + CHUNK_IMAGES, n)
                chunk = torch.from_numpy(images[row + a : row + b])
                torch.randn(chunk.shape, generator=generator, out=chunk)
                chunk.add_(offsets[labels[a:b]].view(b - a, 3, 1, 1))
            row += n
        images.flush()
        del images
        np.save(f"{tmp}.labels.npy", torch.cat(all_labels).numpy())
    except BaseException:  # Ctrl-C or a full disk: leave no multi-GB half-file behind
        for leftover in (tmp, f"{tmp}.labels.npy"):
            with contextlib.suppress(OSError):
                os.remove(leftover)
        raise
    os.replace(f"{tmp}.labels.npy", labels_path_of(path))
    os.replace(tmp, path)  # last: the images' presence says the pair is complete


def open_user_file(
    path: str, labels_path: str | None, *, size: int, val_size: int
) -> tuple[np.ndarray, str]:
    """Check your ``.npy`` (and its labels) without reading the images; return (labels, id)."""
    labels_path = labels_path or labels_path_of(path)
    for key, p in (("path", path), ("labels_path", labels_path)):
        if not os.path.isfile(p):
            raise ConfigError(
                f"dataset.{key}={p}: no such file; pass the images' N×C×H×W .npy as "
                "dataset.path and its N labels as dataset.labels_path"
            )
    try:
        images = np.load(path, mmap_mode="r")
        labels = np.load(labels_path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"dataset.path={path}: not a readable .npy ({exc})") from None
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype not in (np.float32, np.uint8):
        raise ConfigError(
            f"dataset.path={path}: holds {images.dtype} {tuple(images.shape)}; expected "
            "float32 or uint8 images N×3×H×W"
        )
    if size + val_size > len(images) or len(labels) < len(images):
        raise ConfigError(
            f"dataset.size={size} + dataset.val_size={val_size} rows, but {path} holds "
            f"{len(images)} images and {labels_path} {len(labels)} labels; pass sizes that fit"
        )
    stat = os.stat(path)
    ident = f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}:{size}:{val_size}"
    fingerprint = "npy-" + hashlib.sha256(ident.encode()).hexdigest()[:16]
    return np.asarray(labels, dtype=np.int64), fingerprint


def make_mapped(
    *, size: int, val_size: int, image_size: int, num_classes: int, seed: int,
    path: str | None, labels_path: str | None, cache_dir: str, options: dict[str, Any],
) -> DatasetPair:  # fmt: skip
    """``make_tensor`` with ``storage=mmap``: your ``path``, or the generated file (written
    once into ``cache_dir``)."""
    if path:
        labels, fingerprint = open_user_file(path, labels_path, size=size, val_size=val_size)
        if (top := int(labels[: size + val_size].max())) >= num_classes:
            raise ConfigError(
                f"dataset.num_classes={num_classes}, but the labels hold {top}; pass "
                f"dataset.num_classes={top + 1}"
            )
    else:
        fingerprint = tensor_fingerprint(
            size=size, val_size=val_size, image_size=image_size, num_classes=num_classes, seed=seed
        )
        path = os.path.join(cache_dir, f"{fingerprint}.npy")
        if not os.path.isfile(path):
            need = tensor_bytes(size + val_size, image_size)
            check_disk(cache_dir, need, "storage=mmap writes the tensor there")
            t0 = time.perf_counter()
            g, offsets = class_offsets(seed, num_classes)
            write_generated(
                path, counts=(size, val_size), image_size=image_size,
                num_classes=num_classes, generator=g, offsets=offsets,
            )  # fmt: skip
            log.info(
                "wrote %d + %d tensor images (%.2f GB) to %s in %.1f s",
                size, val_size, need / GB, path, time.perf_counter() - t0,
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
        stats={"file_gb": os.path.getsize(path) / GB},
    )
