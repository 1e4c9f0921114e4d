"""The timing split: a slow dataset shows up as data wait, a slow model as compute."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from loaderbench.loop import train_one_epoch
from loaderbench.timing import EpochStats, TimedBatches, steady_samples_per_s

CPU = torch.device("cpu")
SAMPLES, BATCH, DELAY = 32, 8, 0.01


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
