"""What every dataset option returns, and the per-sample randomness that makes sweeps fair.

A DataLoader's workers each carry their own random generator, so with stock PyTorch the random
crop that image ``i`` gets depends on which worker loaded it, i.e. on ``num_workers``. Here the
sampler hands out ``(epoch, index)`` keys and :class:`TransformedDataset` draws the augmentation
of that key from a generator seeded by ``(seed, epoch, index)``: the same pixels reach the model
whatever the loader settings, in any process, with or without persistent workers.

Every sample also carries its id (the index in its split), so a batch is ``(images, labels,
ids)`` and the loop can check that each sample arrived exactly once per epoch (a user's
IterableDataset names no samples: its batches are ``(images, labels)``, checked by count).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


@dataclass
class DatasetPair:
    """The train and val splits of a dataset option, before transforms.

    ``train``/``val`` map an integer index to ``(image, label)`` where the image is whatever the
    transform presets accept (uint8 or float tensor, PIL image). ``fingerprint`` identifies the
    data read (two runs with equal fingerprints read the same data); ``stats`` are numbers worth
    logging once per run (e.g. skipped files) under ``data/<name>``.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    fingerprint: str
    stats: dict[str, float] = field(default_factory=dict)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample of one epoch (hash, not ``seed + index``:
    neighbouring seeds must not give neighbouring random streams)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class TransformedDataset(Dataset):
    """Applies ``transform`` to ``base[index]``; a ``random`` transform draws from a generator
    seeded by ``(seed, epoch, index)``.

    Accepts plain integer indices (epoch 0) or ``(epoch, index)`` keys from :class:`EpochSampler`
    and returns ``(image, label, index)``: the index is the sample's id for the exactly-once count.
    torchvision's v2 transforms draw from torch's global generator, so a random draw happens
    inside ``fork_rng``: the caller's generator state (the model's, with ``num_workers=0``) is
    untouched. A deterministic transform (or none) skips that: it costs ~10 µs a sample, which
    on an in-memory tensor is most of the loading work.
    """

    def __init__(
        self,
        base: Dataset,
        transform: Callable[[Any], Any] | None,
        seed: int,
        *,
        random: bool = True,
    ):
        self.base, self.transform, self.seed = base, transform, seed
        self.random = random and transform is not None

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, int, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image, label = self.base[index]
        return self.apply(image, epoch, index), label, index

    def apply(self, image: Any, epoch: int, index: int) -> Any:
        """The transform of sample ``index`` in ``epoch`` (also used by streamed datasets)."""
        if not self.random:
            return image if self.transform is None else self.transform(image)
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed would also seed every accelerator
            # backend, which (uninitialised) records a stack trace per call, ~0.2-0.5 ms/sample.
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self.transform(image)


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys; the order is a pure function of ``(seed, epoch)``.

    Call :meth:`set_epoch` before creating each epoch's iterator (as with DistributedSampler).
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = range(self.n)
        epoch = self.epoch
        return ((epoch, i) for i in order)
