"""``PackedJpegs``: a map-style Dataset over one file of JPEGs, read at offsets.

The file is opened lazily, in the process that reads: a handle opened in ``__init__`` could not
be pickled into spawned workers, and one inherited by forked workers would share its position
between processes. ``os.pread`` reads at an offset without a shared position at all.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset


class PackedJpegs(Dataset):
    """``(PIL image, label)`` for an index of ``root/<split>.bin``."""

    def __init__(self, root: str, split: str = "train"):
        self.path = str(Path(root) / f"{split}.bin")
        index = np.load(Path(root) / f"{split}.npz")
        self.offsets, self.labels = index["offsets"], index["labels"]
        self.classes = json.loads((Path(root) / "classes.json").read_text())
        self._fd: int | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        if self._fd is None or self._pid != os.getpid():  # first read in this process
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        start, end = self.offsets[index], self.offsets[index + 1]
        data = os.pread(self._fd, int(end - start), int(start))
        return Image.open(io.BytesIO(data)).convert("RGB"), int(self.labels[index])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}  # a file descriptor stays home
