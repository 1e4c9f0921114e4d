"""The ``dataloader`` backend: torch's ``DataLoader``, built as a :class:`LoaderPlan` says.

Train loaders shuffle and drop the last batch as configured; val loaders keep the order and
every sample. The sampler and the loader's own generator are seeded, so nothing here draws from
torch's global generator (which the model's initialisation uses). Workers get the run's
determinism and sharing strategy whatever their start method (:class:`WorkerSetup`). The
training split of tar shards is streamed (a :class:`StreamLoader`, which batches in its
workers); everything else is read by index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from loaderbench.data.loader.plan import TORCH_DEFAULT_SHARING, LoaderPlan
from loaderbench.data.seeding import EpochSampler, collate_batch
from loaderbench.data.shards.dataset import ShardSet
from loaderbench.data.shards.streams import ShardStreams
from loaderbench.devices import configure_determinism

# LoaderPlan fields that go to DataLoader as they are, whatever the dataset
_WORKER_KNOBS = (
    "num_workers", "pin_memory", "persistent_workers", "prefetch_factor",
    "multiprocessing_context", "timeout",
)  # fmt: skip


class WorkerSetup:
    """``worker_init_fn``: what a worker must share with the main process, whatever its start
    method. A forked worker inherits these; a spawned or forkserver one starts fresh."""

    def __init__(self, *, deterministic: bool, sharing_strategy: str | None):
        self.deterministic, self.sharing_strategy = deterministic, sharing_strategy

    def __call__(self, worker_id: int) -> None:
        configure_determinism(self.deterministic, torch.device("cpu"))
        if self.sharing_strategy:
            torch.multiprocessing.set_sharing_strategy(self.sharing_strategy)


class EpochLoader(DataLoader):
    """A DataLoader with the epoch methods every backend's loader has (see
    :mod:`loaderbench.data.loader`); iterating it is the DataLoader's own."""

    def set_epoch(self, epoch: int) -> None:
        """Which epoch the next iterator serves: the sampler's, or an iterable dataset's own."""
        for part in (self.sampler, self.dataset):
            if callable(method := getattr(part, "set_epoch", None)):
                method(epoch)
                return

    def epoch_samples(self, epoch: int) -> int:
        """Samples a correct full epoch delivers: each sample once, less what ``drop_last``
        drops (a probe's epoch may stop sooner: what it fetched is what was due)."""
        stream = isinstance(self.dataset, IterableDataset)
        # a rank's share (of a full epoch, wherever a probe's sampler stops)
        n = len(self.dataset) if stream else self.sampler.share  # type: ignore[arg-type]
        if not self.drop_last:
            return n
        if stream:  # each worker drops its own short batch
            return max(n - max(self.num_workers, 1) * (self.batch_size - 1), 0)
        return n // self.batch_size * self.batch_size

    def close(self) -> None:
        """Stop the worker processes now (persistent workers would otherwise live on into the
        next job of an in-process sweep and compete for the cores it measures)."""
        iterator = getattr(self, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self._iterator = None


class StreamLoader(EpochLoader):
    """A DataLoader over :class:`~loaderbench.data.shards.streams.ShardStreams` that drops the
    placeholders; ``len`` is the epoch's batch count, ``idle_workers`` the workers that own no
    stream."""

    def __iter__(self) -> Iterator[Any]:
        it = super().__iter__()
        try:
            for batch in it:
                if batch is not None:
                    yield batch
        except BaseException:  # a worker's error, or closed mid-epoch: end the workers now
            if callable(shutdown := getattr(it, "_shutdown_workers", None)):
                with contextlib.suppress(Exception):  # (as TimedBatches: keep the first error)
                    shutdown()
            raise

    def __len__(self) -> int:
        return len(self.dataset.plan().order)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def epoch_samples(self, epoch: int) -> int:
        """At most: what the workers' last batches may drop is planned per stream."""
        return self.dataset.plan(epoch).delivered

    @property
    def idle_workers(self) -> int:
        if not self.dataset.shards.split_by_worker:
            return 0
        return max(self.num_workers - len(self.dataset.plan().streams), 0)


def build(
    dataset: Dataset, plan: LoaderPlan, *, seed: int, train: bool = True, deterministic: bool = True
) -> EpochLoader:
    """A DataLoader over ``dataset`` (a TransformedDataset or TransformedIterable) as ``plan``
    says (see the module docstring)."""
    if plan.num_workers:  # process-wide: set every time, so a sweep's next job starts clean
        torch.multiprocessing.set_sharing_strategy(plan.sharing_strategy or TORCH_DEFAULT_SHARING)
    common: dict[str, Any] = {k: getattr(plan, k) for k in _WORKER_KNOBS}
    common |= dict(
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=WorkerSetup(
            deterministic=deterministic, sharing_strategy=plan.sharing_strategy
        )
        if plan.num_workers
        else None,
    )
    if train and isinstance(getattr(dataset, "base", None), ShardSet):
        streams = ShardStreams(
            dataset,  # type: ignore[arg-type]
            batch_size=plan.batch_size,
            shuffle=plan.shuffle,
            drop_last=plan.drop_last,
            seed=seed,
        )
        return StreamLoader(streams, batch_size=None, **common)
    sampler = (  # an iterable dataset yields in its own order: no sampler
        None
        if isinstance(dataset, IterableDataset)
        # val: each rank evaluates its share of every sample, none repeated
        else EpochSampler(len(dataset), shuffle=plan.shuffle and train, seed=seed, even=train)  # type: ignore[arg-type]
    )
    return EpochLoader(
        dataset,
        batch_size=plan.batch_size,
        sampler=sampler,
        drop_last=plan.drop_last and train,
        collate_fn=collate_batch,
        **common,
    )
