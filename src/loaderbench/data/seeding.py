"""The per-sample randomness that makes sweeps fair, and each split wrapped with its transform.

A DataLoader's workers each carry their own random generator, so with stock PyTorch the random
crop that image ``i`` gets depends on which worker loaded it, i.e. on ``num_workers``. Here the
sampler hands out ``(epoch, index)`` keys and :class:`TransformedDataset` draws the augmentation
of that key from a generator seeded by ``(seed, epoch, index)``: the same pixels reach the model
whatever the loader settings, in any process, with or without persistent workers.

Every sample also carries its id (the index in its split), so a batch is ``(images, labels,
ids)`` and the loop can check that each sample arrived exactly once per epoch (a user's
IterableDataset names no samples: its batches are ``(images, labels)``, checked by count).

An IterableDataset has no index for a sampler to hand out, so the key of a sample is its
position in the stream (:class:`TransformedIterable`): in worker ``w`` of ``W``, the ``k``-th
sample gets ``k * W + w``, which is its index in the whole stream when the dataset splits it
round-robin between workers (``itertools.islice(stream, w, None, W)``). A dataset that splits
its stream otherwise (a shard per worker) gets the same seeds for the same ``num_workers`` only;
and with workers the batches interleave by worker, so training histories differ across
``num_workers`` for any iterable dataset. A user's stream carries no sample ids, so the
exactly-once check counts its samples (:class:`~loaderbench.exactly_once.SampleIds`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, Sampler, default_collate, get_worker_info

from loaderbench import keys
from loaderbench.sample_rng import drawing_from


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample of one epoch (hash, not ``seed + index``:
    neighbouring seeds must not give neighbouring random streams)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def collate_batch(samples: list[Any]) -> Any:
    """torch's ``default_collate`` of a batch's samples, with an ``(images, labels, ids)`` batch's
    labels and ids in one tensor (two views of its rows).

    Each tensor of a batch leaves a DataLoader worker as a shared-memory segment of its own,
    its file descriptor passed over a socket: ids of their own made that three a batch where the
    user's ``(images, labels)`` costs two, ~1.5% of a 2-worker epoch over small JPEGs here
    (docs/results.md). Sharing the labels' storage, they cost nothing the user's loop does not.
    """
    batch = default_collate(samples)
    if isinstance(batch, list) and len(batch) == 3:
        labels, ids = batch[1], batch[2]
        if labels.shape == ids.shape and labels.dtype == ids.dtype:
            both = torch.stack((labels, ids))
            batch[1], batch[2] = both[0], both[1]
    return batch


class TransformedDataset(Dataset):
    """Applies ``transform`` to ``base[index]``; a ``random`` transform draws from a generator
    seeded by ``(seed, epoch, index)``.

    Accepts plain integer indices (epoch 0) or ``(epoch, index)`` keys from :class:`EpochSampler`
    and returns ``(image, label, index)``: the index is the sample's id for the exactly-once count.
    A ``seeded`` transform (the presets: :mod:`loaderbench.random_transforms`) draws from the
    sample's own ``torch.Generator``, touching no global state, so loader threads get the same
    augmentation as worker processes. Any other random transform draws from torch's global
    generator, reseeded per sample inside ``fork_rng`` (the caller's state, the model's with
    ``num_workers=0``, is untouched): that keeps processes apart but not threads, which share
    the generator, so the thread backend turns it off (``reseed_global``) and the run says so.
    A deterministic transform (or none) skips both: reseeding costs ~10 µs a sample, which on an
    in-memory tensor is most of the loading work.
    """

    def __init__(
        self,
        base: Dataset,
        transform: Callable[[Any], Any] | None,
        seed: int,
        *,
        random: bool = True,
        seeded: bool = False,
    ):
        self.base, self.transform, self.seed = base, transform, seed
        self.random = random and transform is not None
        self.seeded = seeded
        self.reseed_global = True  # off under loader threads: they share the global generator

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
        if self.seeded:  # a generator of its own: ~2 µs, no global state touched
            with drawing_from(torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))):
                return self.transform(image)
        if not self.reseed_global:  # threads: the shared generator, as it comes (see the class)
            return self.transform(image)
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed would also seed every accelerator
            # backend, which (uninitialised) records a stack trace per call, ~0.2-0.5 ms/sample.
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self.transform(image)


def rank_of_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: torch.distributed's when it is initialised (a
    rank of ``trainer.ranks``), else ``(0, 1)``. Read in a rank's main process: a spawned
    worker has no process group, so what splits by rank reads it when it is built."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys; the order is a pure function of ``(seed, epoch)``.

    Call :meth:`set_epoch` before creating each epoch's iterator (as with DistributedSampler).

    With several ranks (``rank`` of ``world``; by default :func:`rank_of_world`) each rank takes
    its share as DistributedSampler splits it, from the same seeded order: the order padded with
    its own first keys to a multiple of ``world`` (``even``, for training: every rank must take
    as many steps), then every ``world``-th key from position ``rank``. The padding repeats
    :attr:`padding` samples an epoch, on purpose (:meth:`planned_counts`). Without ``even``
    (evaluation) the shares differ by at most one and nothing repeats. One rank: the whole
    order, as before.
    """

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int | None = None,
        world: int | None = None,
        even: bool = True,
    ):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0
        if rank is None or world is None:
            rank, world = rank_of_world()
        self.rank, self.world, self.even = rank, world, even
        self.limit: int | None = None  # a probe's epoch: the first this many keys of the share

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def share(self) -> int:
        """This rank's keys in a full epoch, wherever a probe's :attr:`limit` stops it."""
        if self.even:
            return -(-self.n // self.world)  # ceil: the padded share
        return len(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return self.share if self.limit is None else min(self.share, self.limit)

    @property
    def padding(self) -> int:
        """Samples repeated an epoch so that every rank gets as many (0 with one rank)."""
        return -(-self.n // self.world) * self.world - self.n if self.even else 0

    def order(self, epoch: int) -> list[int]:
        """The epoch's order of every rank together, padded as DistributedSampler pads it."""
        if self.shuffle:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, -1))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if pad := self.padding:
            order += (order * -(-pad // max(self.n, 1)))[:pad]
        return order

    def planned_counts(self, epoch: int) -> torch.Tensor | None:
        """How often each id is due in ``epoch`` over all ranks (the padding's ids twice), or
        None when each is due once."""
        if not self.padding:
            return None
        return torch.bincount(torch.tensor(self.order(epoch)), minlength=self.n).int()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        order = self.order(epoch)
        if self.world > 1:
            order = order[self.rank :: self.world]
        if self.limit is not None:
            order = order[: self.limit]
        return ((epoch, i) for i in order)


class TransformedIterable(TransformedDataset, IterableDataset):
    """Applies ``transform`` to each ``(image, label)`` of ``base``'s stream; a ``random``
    transform draws from a generator seeded by ``(seed, epoch, key)`` (key: see the module).

    The epoch comes from :meth:`set_epoch` in the main process; a persistent worker keeps its
    copy of this object across epochs, so it counts the epochs it has iterated itself. (An
    IterableDataset to the DataLoader, whatever it inherits: no sampler indexes it.)
    """

    epoch, _iterated = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._iterated = epoch, 0

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        epoch = self.epoch + self._iterated
        self._iterated += 1
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for position, (image, label) in enumerate(self.base):
            yield self.apply(image, epoch, position * workers + worker), label

    def first(self) -> tuple[Any, int]:
        """The stream's first sample, transformed, without counting an epoch."""
        image, label = next(iter(self.base))
        return self.apply(image, self.epoch, 0), label


def transformed(
    base: Dataset,
    transform: Callable[[Any], Any] | None,
    seed: int,
    *,
    random: bool,
    seeded: bool = False,
) -> Dataset:
    """``base`` with its transform: a TransformedDataset, or for an iterable dataset a
    TransformedIterable."""
    wrapper = TransformedIterable if isinstance(base, IterableDataset) else TransformedDataset
    return wrapper(base, transform, seed, random=random, seeded=seeded)


def augmentation(dataset: Dataset, backend: str, user_class: str | None = None) -> str:
    """Whose random draws are the same for every loader setting, in words (the run's tag
    ``loaderbench.augmentation``): ``seeded`` (each sample's own generator), ``deterministic``,
    or the global generator reseeded per sample (the same in any worker process), or shared by
    loader threads (not the same twice). Random numbers a user's ``__getitem__`` draws itself are
    outside the promise, whatever the loader."""
    if not getattr(dataset, "random", False):
        text = "deterministic"
    elif getattr(dataset, "seeded", False):
        text = "seeded"
    elif backend == keys.THREADS:
        text = "not the same twice: a random transform draws from torch's global generator, "
        text += "which loader threads share (the presets draw from each sample's own)"
    else:
        text = "global generator, reseeded per sample"
    if user_class:
        text += f"; random numbers {user_class}.__getitem__ draws itself are not covered"
    return text


def first_sample(dataset: Dataset) -> Any:
    """Sample 0 of a map-style dataset, or the first of a TransformedIterable's stream."""
    return dataset.first() if isinstance(dataset, TransformedIterable) else dataset[0]
