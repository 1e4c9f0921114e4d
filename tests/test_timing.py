"""The timing split: a slow dataset shows up as data wait, a slow model as compute."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from loaderbench.loop import train_one_epoch
from loaderbench.timing import (
    EpochStats,
    TimedBatches,
    block_rates,
    projected_samples_per_s,
    steady_samples_per_s,
    throughput_interval,
)

CPU = torch.device("cpu")
SAMPLES, BATCH, DELAY = 32, 8, 0.025  # sleeps that dwarf a tiny step even on a busy machine


class SleepyDataset(Dataset):
    def __init__(self, delay: float):
        self.delay = delay

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, i: int):
        time.sleep(self.delay)
        return torch.zeros(3, 4, 4), i % 2


class SleepyModel(nn.Module):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.linear = nn.Linear(48, 2)

    def forward(self, x):
        time.sleep(self.delay)
        return self.linear(x.flatten(1))


def _epoch(data_delay: float, model_delay: float) -> EpochStats:
    model = SleepyModel(model_delay)
    loader = DataLoader(SleepyDataset(data_delay), batch_size=BATCH)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return train_one_epoch(model, loader, opt, CPU, epoch=0)


def test_slow_dataset_is_data_wait():
    stats = _epoch(data_delay=DELAY, model_delay=0.0)
    slept = SAMPLES * DELAY
    assert stats.samples == SAMPLES and stats.batches == SAMPLES // BATCH
    assert stats.data_wait_s >= slept  # every sleep happened inside next()
    assert stats.compute_s < stats.data_wait_s
    assert stats.data_wait_fraction > 0.5
    assert stats.data_wait_s + stats.compute_s == pytest.approx(stats.epoch_s)


def test_slow_model_is_compute():
    stats = _epoch(data_delay=0.0, model_delay=DELAY * BATCH)
    slept = (SAMPLES // BATCH) * DELAY * BATCH
    assert stats.compute_s >= slept
    assert stats.data_wait_s < stats.compute_s
    assert stats.data_wait_fraction < 0.5


def test_first_batch_latency_includes_worker_start():
    stats = EpochStats(epoch=0)
    loader = DataLoader(SleepyDataset(DELAY), batch_size=BATCH)
    for _ in TimedBatches(loader, CPU, stats):
        pass
    assert stats.first_batch_s >= BATCH * DELAY
    assert stats.first_batch_s <= stats.data_wait_s


def test_warmup_batches_are_reported_and_excluded_from_steady():
    stats = EpochStats(epoch=0)
    loader = DataLoader(SleepyDataset(0.0), batch_size=BATCH)
    for i, _ in enumerate(TimedBatches(loader, CPU, stats, warmup_batches=2)):
        if i < 2:
            time.sleep(0.05)  # slow start, as with cold caches
    assert (stats.warmup_batches, stats.warmup_samples) == (2, 2 * BATCH)
    assert stats.warmup_s >= 0.1
    assert stats.steady_samples_per_s > stats.samples_per_s


def test_steady_is_median_after_epoch_zero():
    epochs = [
        EpochStats(epoch=i, samples=100, epoch_s=s) for i, s in enumerate([10.0, 1.0, 2.0, 4.0])
    ]
    assert steady_samples_per_s(epochs) == pytest.approx(50.0)  # median of 100, 50, 25
    assert steady_samples_per_s(epochs[:1]) == pytest.approx(10.0)


def _epoch_with_steps(step_s: list[float], batch: int = 10) -> EpochStats:
    stats = EpochStats(epoch=1)
    t = 0.0
    for i, dt in enumerate(step_s, 1):
        t += dt
        stats.marks.append((t, i * batch))
    stats.samples, stats.batches, stats.epoch_s = len(step_s) * batch, len(step_s), t
    return stats


def test_block_rates_cover_the_steady_steps_in_contiguous_blocks():
    stats = _epoch_with_steps([0.1] * 10 + [0.2] * 10)  # 100 samples/s, then 50
    assert block_rates(stats, blocks=4) == pytest.approx([100, 100, 50, 50])


def test_block_rates_leave_out_the_warm_up():
    stats = _epoch_with_steps([1.0] * 5 + [0.1] * 20)
    stats.warmup_batches, stats.warmup_samples, stats.warmup_s = 5, 50, 5.0
    assert block_rates(stats, blocks=4) == pytest.approx([100] * 4)


def test_the_interval_holds_the_throughput_and_widens_with_scatter():
    steady = [_epoch_with_steps([0.1] * 20)] * 2
    low, high = throughput_interval([steady[0], *steady])
    assert low == pytest.approx(100) and high == pytest.approx(100)
    noisy = _epoch_with_steps([0.1] * 10 + [0.3] * 10)  # blocks: 100, 100, 50, 33, 33 /s
    low, high = throughput_interval([noisy, noisy, noisy])
    assert 100 / 3 <= low < (100 + 100 + 50 + 100 / 3 + 100 / 3) / 5 < high <= 100


def test_too_few_steps_give_no_interval():
    low, high = throughput_interval([_epoch_with_steps([0.1] * 3)])
    assert math.isnan(low) and math.isnan(high)


def test_a_probe_projects_start_up_as_measured_and_the_rest_at_its_second_half_rate():
    # 1 s of start-up and a burst of 3 quick batches, then 10 samples per 0.1 s: the second
    # half's rate is 100 samples/s, and a full epoch of 1000 samples takes the 8 measured
    # steps' share as measured plus the rest at that rate.
    probe = _epoch_with_steps([1.0, 0.01, 0.01, 0.01] + [0.1] * 8)  # 12 batches, 120 samples
    t_mid, n_mid = probe.marks[5]
    expected = t_mid + (1000 - n_mid) / 100
    assert projected_samples_per_s([probe, probe], 1000) == pytest.approx(1000 / expected)


def test_a_probe_projects_from_between_the_loaders_burst_and_its_tail():
    # 8 batches in flight (4 workers x prefetch 2): filling them beside the step makes the first
    # 8 slow (0.3 s each); then the workers keep pace at 0.1 s a batch; at the end, out of work,
    # they leave the step alone with their last 8 batches (0.05 s each). A full epoch has all
    # three: its further batches go at the pace between.
    probe = _epoch_with_steps([0.3] * 8 + [0.1] * 4 + [0.05] * 8)  # 20 batches, 200 samples
    expected = probe.epoch_s + (1000 - 200) / 100
    assert projected_samples_per_s([probe], 1000, 8, tail=True) == pytest.approx(1000 / expected)
    # cut mid-epoch (no tail): the pace from the burst's end to the cut
    cut = _epoch_with_steps([0.3] * 8 + [0.1] * 4)
    expected = cut.epoch_s + (1000 - 120) / 100
    assert projected_samples_per_s([cut], 1000, 8) == pytest.approx(1000 / expected)
    assert projected_samples_per_s([cut], 1000) < 0.8 * 1000 / expected  # split at the half
    # one batch between the burst and the tail is no pace: nothing to project from
    assert math.isnan(projected_samples_per_s([_epoch_with_steps([0.1] * 17)], 1000, 8, tail=True))


def test_an_uncapped_epoch_projects_to_itself_and_a_tiny_one_to_nothing():
    full = _epoch_with_steps([0.1] * 10)  # 100 samples: the whole epoch
    assert projected_samples_per_s([full], 100) == pytest.approx(100)
    assert math.isnan(projected_samples_per_s([_epoch_with_steps([0.1] * 3)], 100))
