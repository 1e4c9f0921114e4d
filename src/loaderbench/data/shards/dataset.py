"""One split of tar shards as a map-style dataset: a sample read by its id, at its offset.

A sample's id is its position in the split (shards in name order). Validation reads samples
this way, in order; training streams them (:mod:`loaderbench.data.shards.streams`), with the
streaming settings this class carries. ``read_latency_ms`` is paid once per sample read by
offset; ``cold_cache=true`` drops the shards from the page cache before each epoch
(:class:`~loaderbench.data.storage.StoredFiles`).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

import torch
from torch.utils.data import Dataset

from loaderbench.data.decode import decode as decode_bytes
from loaderbench.data.shards.tar import Shard
from loaderbench.data.storage import StoredFiles, read_at


class ShardSet(StoredFiles, Dataset):
    """One split's shards: ``(uint8 tensor 3×H×W, label)`` by sample id (read at its offset),
    plus the streaming settings :class:`~loaderbench.data.shards.streams.ShardStreams` reads."""

    def __init__(
        self,
        shards: list[Shard],
        *,
        decoder: str = "pil",
        read_latency_ms: float = 0.0,
        cold_cache: bool = False,
        streams: int = 8,
        shuffle_buffer: int = 256,
        split_by_worker: bool = True,
    ):
        self.shards = shards
        self.sizes = [len(s) for s in shards]
        self.starts = [0, *accumulate(self.sizes)][:-1]
        StoredFiles.__init__(self, read_latency_ms=read_latency_ms, cold_cache=cold_cache)
        self.decoder = decoder
        self.streams, self.shuffle_buffer = streams, shuffle_buffer
        self.split_by_worker = split_by_worker
        self._files: dict[int, Any] = {}
        self._pid = 0

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}, "_pid": 0}  # open files stay in their process

    def decode(self, data: bytes) -> torch.Tensor:
        return decode_bytes(data, self.decoder)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        si = bisect.bisect_right(self.starts, index) - 1
        shard, i = self.shards[si], index - self.starts[si]
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        if si not in self._files:
            self._files[si] = open(shard.path, "rb", buffering=0)  # noqa: SIM115 (kept open)
        self.wait_for_storage()  # one storage request per sample read by offset
        data = read_at(self._files[si].fileno(), int(shard.offsets[i]), int(shard.sizes[i]))
        return self.decode(data), int(shard.labels[i])

    def stored_files(self) -> Iterator[str]:
        return (s.path for s in self.shards)
