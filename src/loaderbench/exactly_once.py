"""Exactly-once delivery: each training sample arrives once per epoch, whatever the loader.

Every batch carries its samples' ids (``(images, labels, ids)``: see
:class:`~loaderbench.data.seeding.TransformedDataset`; a user's stream names none and is counted),
and :class:`SampleIds` counts them. An
IterableDataset that does not split its shards by worker yields every sample once per worker:
the throughput looks better and the model trains on a different epoch. :func:`check` says so in
words; the run records it (``data/duplicate_samples``, ``data/missing_samples``, the tag
``loaderbench.exactly_once``) and the sweep report flags it.
"""

from __future__ import annotations

from typing import Any

import torch

from loaderbench.timing import EpochStats


class SampleIds:
    """How often each sample id arrived in one epoch.

    A counts tensor indexed by id takes one ``index_add_`` per batch (~3 µs for 64 ids on a
    busy 2-core VM, against a training step of milliseconds; a Python set would cost a hash per
    sample) and is read once, when the epoch ends (~0.4 ms for 100,000 ids).

    A batch without ids (``(images, labels)``: a user's IterableDataset, whose stream names no
    sample) is only counted: then an epoch can be checked for its number of samples, and what
    arrived beyond the split's length counts as duplicates.
    """

    def __init__(self, n: int):
        self.counts = torch.zeros(n, dtype=torch.int32)
        self._ones = torch.ones(0, dtype=torch.int32)
        self.unnamed = 0  # samples that came without ids
        # How often each id is due (None: once). An epoch split over ranks is padded to an even
        # share per rank, and the padding's ids are due twice: expected, not duplicates.
        self.planned: torch.Tensor | None = None
        self.split = False  # summed over ranks: the padding is counted (data/padded_samples)

    def add(self, batch: Any) -> None:
        if len(batch) < 3:
            self.unnamed += len(batch[1])
            return
        ids = batch[2]
        if len(ids) > len(self._ones):
            self._ones = torch.ones(len(ids), dtype=torch.int32)
        self.counts.index_add_(0, ids, self._ones[: len(ids)])

    @classmethod
    def summed(cls, counts: torch.Tensor, unnamed: int, planned: torch.Tensor | None) -> SampleIds:
        """The counts of every rank of an epoch together (summed over the ranks), with what
        the split planned (:meth:`~loaderbench.data.seeding.EpochSampler.planned_counts`)."""
        ids = cls(0)
        ids.counts, ids.unnamed, ids.planned, ids.split = counts, unnamed, planned, True
        return ids

    def fill(self, stats: EpochStats) -> EpochStats:
        """Samples seen (repeats included), duplicates (arrivals beyond the first, or beyond
        what the split planned), missing; with ranks, the padding that arrived."""
        c = self.counts
        if self.split:
            stats.padded_samples = 0.0
        if self.unnamed:
            n = len(c)
            stats.samples_seen = float(self.unnamed)
            stats.duplicate_samples = float(max(self.unnamed - n, 0))
            stats.missing_samples = float(max(n - self.unnamed, 0))
            return stats
        stats.samples_seen = float(c.sum())
        stats.missing_samples = float((c == 0).sum())
        if self.planned is None:
            stats.duplicate_samples = float((c - 1).clamp_(min=0).sum())
            return stats
        stats.duplicate_samples = float((c - self.planned).clamp_(min=0).sum())
        # the planned repeats that arrived: min(count, planned) beyond the first arrival
        stats.padded_samples = float((torch.minimum(c, self.planned) - c.clamp(max=1)).sum())
        return stats


def check(stats: EpochStats, expected: int) -> str | None:
    """What went wrong with the epoch's delivery, in words; None when every sample it should
    deliver (``expected``: all, less what ``drop_last`` drops; with ranks, every rank's share,
    padding included) arrived exactly once, the split's padding apart."""
    seen, dup, missing = stats.samples_seen, stats.duplicate_samples, stats.missing_samples
    if seen != seen:  # nan: not counted (model_only)
        return None
    padded = stats.padded_samples if stats.padded_samples == stats.padded_samples else 0.0
    n = seen - dup - padded + missing  # every id is either seen (once or more) or missing
    if dup == 0 and missing <= n - (expected - padded):
        return None
    pad = f", {padded:.0f} padding" if padded else ""
    return (
        f"epoch {stats.epoch}: {seen:.0f} samples arrived where {expected} were due "
        f"({dup:.0f} duplicates{pad}, {missing:.0f} missing of {n:.0f})"
    )
