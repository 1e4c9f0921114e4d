"""Datasets and models as users write them, good and bad, for ``dataset=custom`` and
``model=custom`` tests (``dataset.target=tests.user_datasets.<Name>``). Module level, so
spawned workers can import them."""

from __future__ import annotations

import itertools
import threading

import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset, get_worker_info

CLASSES = ("a", "b", "c")


def _image(index: int, size: int = 16) -> torch.Tensor:
    """A uint8 3×size×size image whose mean brightness tells its class (learnable)."""
    g = torch.Generator().manual_seed(index)
    base = 60 + 60 * (index % 3)
    return (base + torch.randint(0, 40, (3, size, size), generator=g)).to(torch.uint8)


class Tensors(Dataset):
    """``(uint8 tensor, label)``; ``bad_index`` returns ``bad`` there instead (a wrong sample),
    ``raise_at`` raises KeyError there."""

    classes = CLASSES

    def __init__(self, n: int = 96, size: int = 16, bad_index: int = -1, raise_at: int = -1):
        self.n, self.size, self.bad_index, self.raise_at = n, size, bad_index, raise_at

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if index == self.raise_at:
            raise KeyError(f"no record {index}")
        if index == self.bad_index:
            return "not an image", index % 3
        return _image(index, self.size), index % 3


class Blocks(Tensors):
    """Blocks in a loader thread until ``release`` is set: a ``__getitem__`` stuck on storage
    (the main thread, which checks a sample at build time, passes)."""

    release = threading.Event()

    def __getitem__(self, index: int):
        if threading.current_thread() is not threading.main_thread():
            self.release.wait()
        return super().__getitem__(index)


class Dicts(Tensors):
    """Samples as dicts ``{"pixels": ..., "target": ...}`` (image_key / label_key)."""

    def __getitem__(self, index: int):
        image, label = super().__getitem__(index)
        return {"pixels": image, "target": torch.tensor(label)}


def tensors_split(split: str = "train", n: int = 96) -> Dataset:
    """A function returning a dataset (a target need not be a class); val is the odd half."""
    return Tensors(n=n // 2 if split == "val" else n)


class FailsInRank(Tensors):
    """Builds everywhere but in rank ``rank`` of a multi-rank job (a file only some nodes
    have, say): there it raises, as a user's dataset would."""

    def __init__(self, rank: int = 1, **kwargs):
        import os

        if os.environ.get("RANK") == str(rank):
            raise FileNotFoundError(f"/data/shard-{rank}.bin: no such file on this node")
        super().__init__(**kwargs)


class HoldsFile(Tensors):
    """Opens its file in __init__: fine under fork, unpicklable under spawn."""

    def __init__(self, path: str, n: int = 96):
        super().__init__(n=n)
        self.handle = open(path, "rb")  # noqa: SIM115 (the point of the test)


class HoldsLambda(Tensors):
    def __init__(self, n: int = 96):
        super().__init__(n=n)
        self.scale = lambda x: x


class Stream(IterableDataset):
    """An iterable dataset that splits its stream round-robin between workers (or, with
    ``split=False``, the classic bug: every worker yields the whole stream)."""

    classes = CLASSES

    def __init__(self, n: int = 96, offset: int = 0, with_len: bool = True, split: bool = True):
        self.n, self.offset, self.with_len, self.split = n, offset, with_len, split

    def __len__(self) -> int:
        if not self.with_len:
            raise TypeError("a stream of unknown length")
        return self.n

    def __iter__(self):
        info = get_worker_info()
        w, workers = (info.id, info.num_workers) if info is not None and self.split else (0, 1)
        for i in itertools.islice(range(self.n), w, None, workers):
            yield _image(self.offset + i), (self.offset + i) % 3


class Net(nn.Module):
    """A user's model: takes num_classes and input_shape, nothing about channels_last."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], hidden: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], hidden)
        )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


class TupleNet(Net):
    """Returns (logits, features): the training step cannot use it as it is."""

    def forward(self, x):
        return super().forward(x), x


class WorkerFlags(Dataset):
    """What each worker sees of the process-wide settings (determinism, sharing strategy)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        strategy = torch.multiprocessing.get_sharing_strategy() == "file_system"
        return torch.tensor([torch.are_deterministic_algorithms_enabled(), strategy]), index
