"""Transforms over an iterable dataset, seeded per sample like :class:`TransformedDataset`.

An IterableDataset has no index for a sampler to hand out, so the key of a sample is its
position in the stream: in worker ``w`` of ``W``, the ``k``-th sample gets ``k * W + w``, which
is its index in the whole stream when the dataset splits it round-robin between workers
(``itertools.islice(stream, w, None, W)``). A dataset that splits its stream otherwise (a shard
per worker) gets the same seeds for the same ``num_workers`` only; and with workers the batches
interleave by worker, so training histories differ across ``num_workers`` for any iterable
dataset. A user's stream carries no sample ids, so its batches are ``(images, labels)`` and the
exactly-once check counts its samples (:class:`~loaderbench.exactly_once.SampleIds`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import Dataset, IterableDataset, get_worker_info

from loaderbench.data.base import TransformedDataset


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
    base: Dataset, transform: Callable[[Any], Any] | None, seed: int, *, random: bool
) -> Dataset:
    """``base`` with its transform: a TransformedDataset, or for an iterable dataset a
    TransformedIterable."""
    wrapper = TransformedIterable if isinstance(base, IterableDataset) else TransformedDataset
    return wrapper(base, transform, seed, random=random)


def first_sample(dataset: Dataset) -> Any:
    """Sample 0 of a map-style dataset, or the first of a TransformedIterable's stream."""
    return dataset.first() if isinstance(dataset, TransformedIterable) else dataset[0]
