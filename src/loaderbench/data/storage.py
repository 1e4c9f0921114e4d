"""The storage under the datasets read from files: reading, emulated latency, a cold page cache,
the free disk.

Slow or cold storage: ``dataset.read_latency_ms`` waits before each storage request, in the
process that reads (a DataLoader worker), like a network filesystem's round trip: once per file
of an image folder, per sample read by offset, per 1 MiB request of a streaming read
(:func:`open_stream`). ``dataset.cold_cache=true`` makes :meth:`StoredFiles.before_epoch` drop
the training split's files from the OS page cache with ``posix_fadvise(DONTNEED)`` (Linux; no
root needed), so each epoch really reads the disk.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import time
from collections.abc import Iterable
from typing import Any

from loaderbench.config import ConfigError
from loaderbench.data.validate import fail, is_number

log = logging.getLogger(__name__)

GB = 1e9  # decimal, as disks and the memory figures are quoted
REQUEST_BYTES = 1 << 20  # one storage request of a streaming read


def check_storage(read_latency_ms: Any, cold_cache: Any) -> None:
    """The emulated storage of the datasets read from files: a latency in ms, a cold cache."""
    if not (is_number(read_latency_ms) and read_latency_ms >= 0):
        why = "must be 0 or more milliseconds"
        raise fail("read_latency_ms", read_latency_ms, why, "e.g. dataset.read_latency_ms=0")
    if cold_cache and not hasattr(os, "posix_fadvise"):
        raise ConfigError(
            "dataset.cold_cache=true needs os.posix_fadvise, which this platform lacks (it is "
            "Linux's); pass dataset.cold_cache=false"
        )


def check_disk(cache_dir: str, need: int, what: str) -> None:
    """ConfigError when ``need`` bytes (``what`` writes them) do not fit in ``cache_dir``."""
    os.makedirs(cache_dir, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if need > free:
        raise ConfigError(
            f"dataset.cache_dir={cache_dir}: {what} ({need / GB:.1f} GB) but {free / GB:.1f} GB "
            "is free; point dataset.cache_dir at a bigger disk, or lower dataset.size or "
            "dataset.image_size"
        )


def read_bytes(path: str) -> bytearray:
    """The whole file, read into one buffer of its size."""
    with open(path, "rb") as f:
        data = bytearray(os.fstat(f.fileno()).st_size)
        n = f.readinto(data)
    return data if n == len(data) else data[:n]


def read_at(fd: int, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise OSError(f"short read: {len(data)} of {size} bytes at offset {offset}")
    return data


class SlowFile(io.FileIO):
    """A file whose every read request first waits ``latency_s``: a storage round trip."""

    def __init__(self, path: str, latency_s: float):
        super().__init__(path, "rb")
        self.latency_s = latency_s

    def readinto(self, buffer) -> int | None:  # type: ignore[override]
        if self.latency_s:
            time.sleep(self.latency_s)
        return super().readinto(buffer)


def open_stream(path: str, latency_s: float = 0.0) -> io.BufferedReader:
    """``path`` for a front-to-back read in :data:`REQUEST_BYTES` requests (a seek within the
    buffer, over a tar header, costs no request)."""
    return io.BufferedReader(SlowFile(path, latency_s), buffer_size=REQUEST_BYTES)


def drop_from_page_cache(paths: Iterable[str]) -> tuple[int, int]:
    """``posix_fadvise(DONTNEED)`` each file; return how many were advised and how many were
    named (a file that cannot be opened is skipped with a warning)."""
    dropped = named = 0
    for path in paths:
        named += 1
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
    return dropped, named


class StoredFiles:
    """What a dataset read from files shares: the emulated latency of a storage request and the
    cold page cache before each epoch. A subclass names its files in :meth:`stored_files`."""

    def __init__(self, *, read_latency_ms: float = 0.0, cold_cache: bool = False):
        self.read_latency_s, self.cold_cache = read_latency_ms / 1000.0, cold_cache

    def wait_for_storage(self) -> None:
        """One storage request's round trip, paid by the process that reads."""
        if self.read_latency_s:
            time.sleep(self.read_latency_s)

    def stored_files(self) -> Iterable[str]:
        raise NotImplementedError

    def forget_mapped(self) -> None:
        """Let go of this process's own mapped pages of the files (none here)."""

    def before_epoch(self, epoch: int) -> int:
        """With ``cold_cache``, drop the files from the page cache; return how many.

        Called in the main process before each training epoch, outside its clock. Pages that are
        dirty (files written moments ago) are only queued for writeback and stay cached, and so
        does a page still mapped elsewhere (by a persistent worker).
        """
        if not self.cold_cache:
            return 0
        t0 = time.perf_counter()
        self.forget_mapped()
        dropped, named = drop_from_page_cache(self.stored_files())
        log.info(
            "epoch %d: dropped %d of %d files from the page cache in %.2f s",
            epoch, dropped, named, time.perf_counter() - t0,
        )  # fmt: skip
        return dropped
