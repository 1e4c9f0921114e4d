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
import shutil
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from loaderbench.config import ConfigError
from loaderbench.data.imagefiles import drop_from_page_cache

log = logging.getLogger(__name__)

_GB = 1e9
CHUNK_IMAGES = 256  # a multiple of 16: torch.randn then draws exactly what one call would


class MappedImages(Dataset):
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
        self.read_latency_s, self.cold_cache = read_latency_ms / 1000.0, cold_cache
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
        if self.read_latency_s:
            time.sleep(self.read_latency_s)  # the storage's round trip, paid by the reader
        return torch.from_numpy(self.array()[self.start + index]), int(self.labels[index])

    def before_epoch(self, epoch: int) -> int:
        """With ``cold_cache``, drop the file's pages: this process's mapping, then the page
        cache (a page still mapped elsewhere, e.g. by a persistent worker, stays)."""
        if not self.cold_cache:
            return 0
        if self._array is not None:
            self._array._mmap.madvise(mmap.MADV_DONTNEED)
        dropped = drop_from_page_cache([self.path])
        log.info("epoch %d: dropped %s from the page cache", epoch, self.path)
        return dropped


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


def check_disk(cache_dir: str, need: int) -> None:
    os.makedirs(cache_dir, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if need > free:
        raise ConfigError(
            f"dataset.cache_dir={cache_dir}: storage=mmap writes the tensor there "
            f"({need / _GB:.1f} GB) but {free / _GB:.1f} GB is free; point dataset.cache_dir at "
            "a bigger disk, or lower dataset.size or dataset.image_size"
        )


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
