"""Memory and CPU keys, and the copy-on-read effect they exist to expose.

A forked DataLoader worker shares the parent's pages until it writes to one. Reading a Python
object writes its reference count, so a worker that reads every element of a big Python list
ends up with its own copy of every page holding those elements; reading a tensor writes
nothing. Workers' PSS shows the difference; it is a property of the data's size, not of a clock.
"""

from __future__ import annotations

import math
import sys
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from loaderbench import keys, tracking
from loaderbench.experiment import run
from loaderbench.resources import MB, ResourceMonitor

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PSS/USS and /dev/shm are Linux figures"
)
N = 2_500_000  # ~80 MB as Python floats (24-byte objects + 8-byte pointers), 20 MB as float64
ITEMS = 8  # each item reads the whole data, so every worker touches every element
MEMORY_KEYS = (
    keys.PEAK_RSS,
    keys.PEAK_PSS,
    keys.PEAK_USS,
    keys.WORKERS_PSS,
    keys.PEAK_SHM,
    keys.PEAK_ANON,
    keys.CPU_UTILIZATION,
    keys.MONITOR_CPU_FRACTION,
    keys.MONITOR_SAMPLES,
    keys.MONITOR_PSS_SAMPLES,
)


class ListData(Dataset):
    """The data as one Python list of float objects: every read increfs/decrefs each float."""

    def __init__(self, n: int):
        self.data = [float(i) for i in range(n)]

    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(sum(self.data))


class TensorData(Dataset):
    """The same numbers in one tensor: reading it leaves the forked pages shared."""

    def __init__(self, n: int):
        self.data = torch.arange(n, dtype=torch.float64)

    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data.sum()


def workers_pss_mb(dataset: Dataset) -> float:
    """Peak PSS of 2 forked workers that each read all of ``dataset``'s data."""
    loader = DataLoader(dataset, batch_size=1, num_workers=2, multiprocessing_context="fork")
    with ResourceMonitor(0.05) as monitor:
        it = iter(loader)
        values = [next(it) for _ in range(len(loader))]
        # Every worker has handled items (round-robin) and is still alive until the iterator is
        # exhausted: sample now, so the figure does not depend on the sampling thread's timing.
        monitor.sample()
        del it  # shuts the workers down
    assert all(v.item() == values[0].item() for v in values)
    return monitor.usage.peak_workers_pss_mb


@linux_only
def test_a_run_logs_memory_and_cpu(small_cfg):
    tracker = tracking.InMemoryTracker()
    run(
        small_cfg("loader.num_workers=2", "bench.memory_interval_s=0.05", "bench.mode=loader_only"),
        tracker=tracker,
    )
    for key in MEMORY_KEYS:
        assert key in tracker.metrics, key
        assert math.isfinite(tracker.last(key)), key
    assert tracker.last(keys.PEAK_RSS) > 0
    assert 0 < tracker.last(keys.PEAK_USS) <= tracker.last(keys.PEAK_PSS)
    assert tracker.last(keys.PEAK_PSS) <= tracker.last(keys.PEAK_RSS)
    assert tracker.last(keys.WORKERS_PSS) > 0  # read once as soon as the workers exist
    assert tracker.last(keys.PEAK_SHM) >= 0
    assert tracker.last(keys.CPU_UTILIZATION) > 0
    assert 0 < tracker.last(keys.PEAK_ANON) <= tracker.last(keys.PEAK_RSS)
    # The sampler ran, read PSS at least once, and its CPU was measured.
    assert tracker.last(keys.MONITOR_SAMPLES) >= tracker.last(keys.MONITOR_PSS_SAMPLES) >= 1
    assert 0 < tracker.last(keys.MONITOR_CPU_FRACTION) < 1


@linux_only
def test_pss_reads_are_spaced_by_their_budget():
    # A budget so small that one PSS read (~ms) buys a spacing far longer than the test: only
    # the first tick reads PSS, while the cheap tier keeps sampling.
    with ResourceMonitor(0.01, pss_budget=1e-6) as monitor:
        time.sleep(0.05)
        junk = bytearray(64 * MB)  # a new RSS high: would earn a PSS read within budget
        junk[::4096] = b"x" * len(junk[::4096])  # touched, so resident
        time.sleep(0.3)
    del junk
    u = monitor.usage
    assert u.pss_samples == 1, u
    assert u.samples > 5, u
    assert u.peak_rss_mb >= 64, u


@linux_only
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_python_list_is_copied_on_read_by_forked_workers_tensor_is_not():
    list_data = ListData(N)
    list_mb = (sys.getsizeof(list_data.data) + N * sys.getsizeof(1.0)) / MB
    list_pss = workers_pss_mb(list_data)
    del list_data  # the tensor run's workers must not inherit the list
    tensor_pss = workers_pss_mb(TensorData(N))
    # Each worker should own a copy of the ~60 MB of float objects; demand half the list's
    # size, a margin far above what differs between the two runs otherwise.
    assert list_pss > tensor_pss + 0.5 * list_mb, (list_pss, tensor_pss, list_mb)
