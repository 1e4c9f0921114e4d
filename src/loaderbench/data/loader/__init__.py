"""The one door from the ``loader`` config to what yields batches.

:func:`plan_loader` checks ``loader.*`` and normalises it into a :class:`LoaderPlan` (each value
actually used recorded as ``effective.*``, with the reason where it differs); :func:`fit_plan`
adds what the dataset rules out; :func:`build_loader` chooses the backend and builds it: torch's
DataLoader (:mod:`loaderbench.data.loader.dataloader`, worker processes) or loader threads in
this process (:mod:`loaderbench.data.loader.threads`, on torchdata.nodes). Another backend is
one more entry in :data:`BACKENDS`, chosen in :func:`build_loader` and nowhere else.

What a backend builds is a :class:`Batches`: iterable (one epoch per iterator), with a length
(batches an epoch), and the three epoch methods the job calls through :func:`set_epoch`,
:func:`epoch_samples` and :func:`close_loader`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from torch.utils.data import Dataset

from loaderbench import keys
from loaderbench.data.loader.dataloader import build as build_dataloader
from loaderbench.data.loader.plan import (
    TORCH_DEFAULT_PREFETCH,
    TORCH_DEFAULT_SHARING,
    LoaderPlan,
    fit_plan,
    plan_loader,
)
from loaderbench.data.loader.threads import build as build_threads


class Batches(Protocol):
    """What yields batches, whatever the backend."""

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None:
        """Before each epoch's iterator: which epoch it serves."""

    def epoch_samples(self, epoch: int) -> int:
        """Samples a correct epoch delivers (the exactly-once count's target)."""

    def close(self) -> None:
        """End the backend's workers now, whatever state they are in."""


# backend name -> build(dataset, plan, *, seed, train, deterministic)
BACKENDS: dict[str, Callable[..., Batches]] = {
    keys.DATALOADER: build_dataloader,
    keys.THREADS: build_threads,
}
DEFAULT_BACKEND = keys.DATALOADER


def build_loader(
    dataset: Dataset, plan: LoaderPlan, *, seed: int, train: bool = True, deterministic: bool = True
) -> Batches:
    """What yields ``dataset``'s batches as ``plan`` says: ``train`` shuffles and drops the last
    batch as configured, val keeps the order and every sample; the order is seeded by ``seed``."""
    build = BACKENDS[plan.backend]  # the one place a backend is chosen
    return build(dataset, plan, seed=seed, train=train, deterministic=deterministic)


def set_epoch(loader: Batches, epoch: int) -> None:
    """Before each epoch's iterator: which epoch it serves."""
    loader.set_epoch(epoch)


def epoch_samples(loader: Batches, epoch: int) -> int:
    """Samples a correct epoch delivers: each sample once, less what ``drop_last`` drops (at
    most, for a stream: what its workers' last batches may drop)."""
    return loader.epoch_samples(epoch)


def close_loader(loader: Batches) -> list[Any]:
    """Stop a loader's workers now (persistent workers would otherwise live on into the next
    job of an in-process sweep and compete for the cores it measures). Returns the threads
    that outlived it (stuck in ``__getitem__``: only the thread backend can have them)."""
    loader.close()
    return list(getattr(loader, "stuck", []))


__all__ = [
    "BACKENDS",
    "TORCH_DEFAULT_PREFETCH",
    "TORCH_DEFAULT_SHARING",
    "Batches",
    "LoaderPlan",
    "build_loader",
    "close_loader",
    "epoch_samples",
    "fit_plan",
    "plan_loader",
    "set_epoch",
]
