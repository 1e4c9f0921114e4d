"""The ranks' figures of one epoch as the job's: what the one run records.

The ranks meet at every step's all-reduce, so the job's epoch lasts as long as rank 0's:
throughput is all ranks' samples ÷ rank 0's epoch wall time. Loss and accuracy are the ranks'
means weighted by their samples (their shares are equal, the padding included); validation is
each rank's share of the split, none repeated, weighted likewise. The stall is the ranks' mean,
with each rank's own as ``rank/<r>/data_wait_fraction``: a rank that waits for data holds the
others at the next all-reduce, where their wait counts as compute. The exactly-once counts were
summed over the ranks before the epoch was filled in, so any rank's are the job's. Pure: the
fast tests merge ranks made by hand.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from loaderbench import keys
from loaderbench.timing import EpochStats


@dataclass
class RankEpoch:
    """What one rank reports of one epoch: its stats, the samples it was due, and its share of
    the validation split."""

    rank: int
    stats: EpochStats
    due: int
    val_samples: int


def _weighted(values: list[float], weights: list[float]) -> float:
    total = sum(weights)
    if total <= 0 or any(math.isnan(v) for v in values):
        return math.nan
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total


def merge(reports: list[RankEpoch]) -> EpochStats:
    """The job's epoch from every rank's (in rank order)."""
    stats = [r.stats for r in reports]
    first = stats[0]
    out = EpochStats(epoch=first.epoch)
    out.samples = sum(s.samples for s in stats)
    out.batches = sum(s.batches for s in stats)
    out.epoch_s = first.epoch_s
    out.data_wait_s = statistics.fmean(s.data_wait_s for s in stats)
    out.first_batch_s = max(s.first_batch_s for s in stats)  # the job starts with its last rank
    out.warmup_batches = first.warmup_batches
    out.warmup_samples = sum(s.warmup_samples for s in stats)
    out.warmup_s = first.warmup_s
    train_w = [float(s.samples) for s in stats]
    out.loss = _weighted([s.loss for s in stats], train_w)
    out.acc = _weighted([s.acc for s in stats], train_w)
    val_w = [float(r.val_samples) for r in reports]
    out.val_loss = _weighted([s.val_loss for s in stats], val_w)
    out.val_acc = _weighted([s.val_acc for s in stats], val_w)
    out.eval_s = max(s.eval_s for s in stats)
    out.samples_seen, out.duplicate_samples = first.samples_seen, first.duplicate_samples
    out.missing_samples, out.padded_samples = first.missing_samples, first.padded_samples
    # every step, each rank took a batch: rank 0's steps scaled to the job's samples
    scale = out.samples / first.samples if first.samples else 0.0
    out.marks = [(t, round(n * scale)) for t, n in first.marks]
    return out


def rank_metrics(reports: list[RankEpoch]) -> dict[str, float]:
    """Each rank's stall in the epoch."""
    return {
        keys.RANK_DATA_WAIT_FRACTION.format(r.rank): r.stats.data_wait_fraction for r in reports
    }


def slowest_rank(epochs: list[list[RankEpoch]]) -> int:
    """The rank that waited for data longest over the run."""
    waits: dict[int, float] = {}
    for reports in epochs:
        for r in reports:
            waits[r.rank] = waits.get(r.rank, 0.0) + r.stats.data_wait_s
    return max(waits, key=lambda rank: (waits[rank], -rank)) if waits else 0
