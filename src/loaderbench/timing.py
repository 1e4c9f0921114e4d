"""The clocks: first-batch latency, time blocked waiting for data vs compute, warm-up.

An epoch's wall time is split in two: the time the training loop spends blocked in
``next(iterator)`` (data wait, worker start-up included) and everything else (compute: the copy
to the device, forward, backward, step). The device is synchronised only at window edges (epoch
start and end, the end of warm-up): a per-step sync would slow the very loop being measured, and
without any sync queued device work would be billed to whichever window happens to wait for it.
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from loaderbench import keys


def synchronize(device: torch.device) -> None:
    """Sync point: include queued device work before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class EpochStats:
    """What one pass over a loader measured; loss/accuracy are filled in by the loop."""

    epoch: int
    samples: int = 0
    batches: int = 0
    epoch_s: float = 0.0
    data_wait_s: float = 0.0
    first_batch_s: float = float("nan")
    warmup_batches: int = 0
    warmup_samples: int = 0
    warmup_s: float = 0.0
    loss: float = float("nan")
    acc: float = float("nan")
    val_loss: float = float("nan")
    val_acc: float = float("nan")
    eval_s: float = 0.0  # evaluation after the epoch, outside the epoch's clock
    # exactly-once accounting of the sample ids (nan: not counted, e.g. model_only)
    samples_seen: float = float("nan")
    duplicate_samples: float = float("nan")
    missing_samples: float = float("nan")
    padded_samples: float = float("nan")  # with ranks: the split's planned repeats that arrived
    # (seconds since the epoch's start, samples so far) at the end of every step: the noise
    # estimate's raw material; one tuple append per step (~0.1 us).
    marks: list[tuple[float, int]] = field(default_factory=list, repr=False)
    # An emulated step's steady waits for its batch, seconds each (loaderbench.feeding).
    step_waits: list[float] = field(default_factory=list, repr=False)

    @property
    def compute_s(self) -> float:
        return max(self.epoch_s - self.data_wait_s, 0.0)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.epoch_s if self.epoch_s > 0 else float("nan")

    @property
    def steady_samples_per_s(self) -> float:
        """Throughput after the warm-up batches (equal to ``samples_per_s`` without warm-up)."""
        seconds = self.epoch_s - self.warmup_s
        samples = self.samples - self.warmup_samples
        return samples / seconds if seconds > 0 and samples > 0 else float("nan")

    @property
    def data_wait_fraction(self) -> float:
        return self.data_wait_s / self.epoch_s if self.epoch_s > 0 else float("nan")

    @property
    def step_wait_ms(self) -> float:
        """An emulated step's mean wait for its batch over the steady steps, in ms."""
        return 1e3 * statistics.fmean(self.step_waits) if self.step_waits else float("nan")

    @property
    def compute_per_batch_ms(self) -> float:
        return 1e3 * self.compute_s / self.batches if self.batches else float("nan")


def batch_size_of(batch: Any) -> int:
    """Samples in a batch: the length of its first tensor (labels or images)."""
    first = batch[0] if isinstance(batch, (list, tuple)) else batch
    return len(first)


class TimedBatches:
    """Iterates an epoch's batches and accounts for the time spent waiting for each.

    The clock starts before ``iter(loader)``, so worker start-up (and, with persistent workers,
    the refill of the prefetch queue) counts as waiting for data: the user waits for it too.
    """

    def __init__(
        self,
        loader: Iterable,
        device: torch.device,
        stats: EpochStats,
        *,
        warmup_batches: int = 0,
        max_batches: int | None = None,
        sync: Callable[[], None] | None = None,
    ):
        self.loader, self.device, self.stats, self.warmup = loader, device, stats, warmup_batches
        self.limit = max_batches  # a probe stops the epoch here (None: the whole epoch)
        # the window edges' sync point (an emulated step's drain waits for its queued steps)
        self.sync = sync or (lambda: synchronize(device))

    def __iter__(self) -> Iterator[Any]:
        s, clock = self.stats, time.perf_counter
        self.sync()
        start = clock()
        t0 = start
        it = iter(self.loader)
        try:
            while True:
                try:
                    batch = next(it)
                except StopIteration:
                    s.data_wait_s += clock() - t0
                    break
                t1 = clock()
                s.data_wait_s += t1 - t0
                if s.batches == 0:
                    s.first_batch_s = t1 - start
                s.batches += 1
                s.samples += batch_size_of(batch)
                yield batch
                if s.batches == self.warmup:  # window edge: the end of warm-up
                    self.sync()
                    s.warmup_batches, s.warmup_samples, s.warmup_s = (
                        s.batches,
                        s.samples,
                        clock() - start,
                    )
                t0 = clock()
                s.marks.append((t0 - start, s.samples))
                if s.batches == self.limit:
                    break
        except BaseException:  # a worker's error, a stop signal, or the loop stopped: end its
            # workers now (the traceback would keep them alive into the next job); a generator
            # (a StreamLoader's) ends its own when closed. Whatever ending them raises (torch
            # reports workers that a stop signal killed too) must not replace why it stopped.
            for end in ("_shutdown_workers", "close"):
                if callable(method := getattr(it, end, None)):
                    with contextlib.suppress(Exception):
                        method()
            raise
        self.sync()
        s.epoch_s = clock() - start


def block_rates(stats: EpochStats, blocks: int = 5) -> list[float]:
    """Samples/s of ``blocks`` contiguous runs of the epoch's steady steps (after warm-up).

    Contiguous blocks, not single steps: with workers, batches arrive in bursts, so single
    steps are correlated and would make the run look more precise than it is.
    """
    marks = [(t, n) for t, n in stats.marks if n > stats.warmup_samples]
    if len(marks) < 2 * blocks:
        return []
    t_prev, n_prev = stats.warmup_s, stats.warmup_samples
    rates = []
    for i in range(1, blocks + 1):
        t, n = marks[i * len(marks) // blocks - 1]
        if t > t_prev:
            rates.append((n - n_prev) / (t - t_prev))
        t_prev, n_prev = t, n
    return rates


def throughput_interval(
    epochs: list[EpochStats], level: float = 0.95, resamples: int = 2000
) -> tuple[float, float]:
    """A bootstrap interval of the steady throughput, from the run's own steady epochs.

    The blocks of every steady epoch (:func:`block_rates`) are resampled with replacement and
    their mean taken; the interval holds ``level`` of those means. Seeded: the same run gives
    the same interval. (nan, nan) when the run has too few steps to say.
    """
    rates = [r for e in (epochs[1:] or epochs) for r in block_rates(e)]
    if len(rates) < 4:
        return float("nan"), float("nan")
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(rates, k=len(rates))) for _ in range(resamples))
    tail = (1 - level) / 2
    return means[int(tail * resamples)], means[int((1 - tail) * resamples) - 1]


def projected_samples_per_s(
    epochs: list[EpochStats], full_samples: int, in_flight: int = 0, *, tail: bool = False
) -> float:
    """What capped epochs (a probe, ``bench.probe_batches``) would have delivered over full
    epochs of ``full_samples``: each epoch as measured, plus the batches a full epoch has beyond
    it at the pace of the probe's middle, past the start (worker start-up and the burst that
    fills the loader's ``in_flight`` batches, or the first half, whichever is longer).

    With ``tail`` the probe's epoch ended as a full one does (its sampler ran out, so the workers
    ran out of work and the step took what they had prefetched): the middle ends where that tail
    of ``in_flight`` batches begins. Without, it was cut mid-epoch, and the middle runs to the
    cut. NaN when an epoch is too short to have two batches in its middle."""
    seconds = 0.0
    for e in epochs:
        if e.samples >= full_samples:  # not capped: as measured
            seconds += e.epoch_s
            continue
        n = len(e.marks)
        first = max(in_flight, 1) if tail else max(n // 2, in_flight)
        last = n - 1 - in_flight if tail else n - 1
        if n < 4 or last - first < 1:
            return float("nan")
        (t_a, n_a), (t_b, n_b) = e.marks[first - 1], e.marks[last]
        if t_b <= t_a:
            return float("nan")
        seconds += e.epoch_s + (full_samples - e.samples) * (t_b - t_a) / (n_b - n_a)
    return len(epochs) * full_samples / seconds if seconds > 0 else float("nan")


def steady_samples_per_s(epochs: list[EpochStats]) -> float:
    """Median per-epoch steady throughput after epoch 0 (epoch 0 alone if it is the only one)."""
    values = [e.steady_samples_per_s for e in (epochs[1:] or epochs)]
    return statistics.median(values) if values else float("nan")


# --- metric builders: what an EpochStats means under the contract's keys --------------------


def epoch_metrics(stats: EpochStats) -> dict[str, float]:
    """Per-epoch metrics (step = epoch). Loss/accuracy only when a model was trained."""
    metrics = {
        keys.SAMPLES_PER_S: stats.samples_per_s,
        keys.STEADY_SAMPLES_PER_S: stats.steady_samples_per_s,
        keys.EPOCH_S: stats.epoch_s,
        keys.DATA_WAIT_S: stats.data_wait_s,
        keys.COMPUTE_S: stats.compute_s,
        keys.WARMUP_S: stats.warmup_s,
        keys.EVAL_S: stats.eval_s,
        keys.DATA_WAIT_FRACTION: stats.data_wait_fraction,
    }
    if not math.isnan(stats.loss):
        metrics |= {keys.LOSS_TRAIN: stats.loss, keys.ACC_TRAIN: stats.acc}
    if not math.isnan(stats.val_acc):
        metrics |= {keys.LOSS_VAL: stats.val_loss, keys.ACC_VAL: stats.val_acc}
    if stats.step_waits:
        metrics[keys.STEP_WAIT_MS] = stats.step_wait_ms
    if not math.isnan(stats.samples_seen):
        metrics |= {
            keys.SAMPLES_SEEN: stats.samples_seen,
            keys.DUPLICATE_SAMPLES: stats.duplicate_samples,
            keys.MISSING_SAMPLES: stats.missing_samples,
        }
    if not math.isnan(stats.padded_samples):  # an epoch split over ranks
        metrics[keys.PADDED_SAMPLES] = stats.padded_samples
    return metrics


def summary_metrics(epochs: list[EpochStats], wall_s: float) -> dict[str, float]:
    """Once-per-run metrics over all epochs (no step)."""
    samples = sum(e.samples for e in epochs)
    seconds = sum(e.epoch_s for e in epochs)
    wait = sum(e.data_wait_s for e in epochs)
    low, high = throughput_interval(epochs)
    metrics = {
        keys.SUMMARY_SAMPLES_PER_S: samples / seconds if seconds > 0 else float("nan"),
        keys.SUMMARY_STEADY: steady_samples_per_s(epochs),
        keys.SUMMARY_FIRST_BATCH: epochs[0].first_batch_s if epochs else float("nan"),
        keys.SUMMARY_DATA_WAIT: wait / seconds if seconds > 0 else float("nan"),
        keys.SUMMARY_WALL: wall_s,
        keys.SUMMARY_WARMUP_BATCHES: float(epochs[0].warmup_batches) if epochs else 0.0,
    }
    if not math.isnan(low):  # too few steps to say: no interval rather than a NaN
        metrics |= {keys.SUMMARY_STEADY_LOW: low, keys.SUMMARY_STEADY_HIGH: high}
    steady = epochs[1:] or epochs
    if waits := [e.step_wait_ms for e in steady if e.step_waits]:
        metrics[keys.SUMMARY_STEP_WAIT] = statistics.median(waits)
    if epochs and not math.isnan(epochs[-1].loss):
        metrics[keys.SUMMARY_TRAIN_LOSS] = epochs[-1].loss
        # a model stepped (train, model_only): what bench.step_from reads
        metrics[keys.SUMMARY_COMPUTE_PER_BATCH] = statistics.median(
            e.compute_per_batch_ms for e in steady
        )
    if epochs and not math.isnan(epochs[-1].val_acc):
        metrics[keys.SUMMARY_VAL_ACC] = epochs[-1].val_acc
    return metrics
