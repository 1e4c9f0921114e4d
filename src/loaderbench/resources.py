"""Memory and CPU of the main process and its DataLoader workers, sampled during a run.

RSS alone double-counts pages that workers share with the main process (a forked dataset) and
hides copy-on-read growth; PSS splits shared pages between the processes that map them and USS
counts only a process's own pages, so the sum of PSS is the tree's real footprint and workers'
PSS growth is the copy-on-read cost. Shared memory (``/dev/shm``), where worker batches travel
to the main process, is sampled too (the growth over the run's start).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)
MB = 1024 * 1024
SHM = "/dev/shm"


@dataclass
class ResourceUsage:
    peak_rss_mb: float = 0.0  # main + workers
    peak_pss_mb: float = float("nan")  # main + workers (Linux)
    peak_uss_mb: float = float("nan")
    peak_workers_pss_mb: float = float("nan")  # workers only
    peak_shm_mb: float = float("nan")
    cpu_utilization: float = float("nan")  # process-tree CPU seconds / wall seconds


def _shm_used() -> float | None:
    try:
        return shutil.disk_usage(SHM).used / MB
    except OSError:
        return None


class ResourceMonitor:
    """A daemon thread that samples the process tree every ``interval_s`` seconds.

    Use as a context manager; ``usage`` holds the peaks afterwards. Sampling PSS reads
    ``/proc/<pid>/smaps_rollup`` (a few hundred microseconds per process).
    """

    def __init__(self, interval_s: float = 0.2, *, full: bool = True):
        self.interval_s, self.full = interval_s, full
        self.usage = ResourceUsage()
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loaderbench-resources", daemon=True)

    # CPU: own + reaped children (exact, from the kernel) + live children (last sample).
    def _tree_cpu(self) -> float:
        t = self._proc.cpu_times()
        live = 0.0
        for child in self._proc.children(recursive=True):
            try:
                c = child.cpu_times()
                live += c.user + c.system
            except psutil.Error:
                pass
        return t.user + t.system + t.children_user + t.children_system + live

    def __enter__(self) -> ResourceMonitor:
        self._shm0 = _shm_used()
        self._cpu0, self._wall0 = self._tree_cpu(), time.perf_counter()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        wall = time.perf_counter() - self._wall0
        if wall > 0:
            self.usage.cpu_utilization = (self._tree_cpu() - self._cpu0) / wall

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # a sampling hiccup must never kill the run
                log.debug("resource sample failed", exc_info=True)

    def sample(self) -> None:
        u = self.usage
        rss = pss = uss = workers_pss = 0.0
        have_pss = self.full
        for i, proc in enumerate([self._proc, *self._proc.children(recursive=True)]):
            try:
                if self.full:
                    m = proc.memory_full_info()
                    rss += m.rss / MB
                    if hasattr(m, "pss"):
                        pss += m.pss / MB
                        uss += m.uss / MB
                        if i > 0:
                            workers_pss += m.pss / MB
                    else:
                        have_pss = False
                else:
                    rss += proc.memory_info().rss / MB
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # a worker that exited between listing and reading
            except psutil.AccessDenied:
                have_pss = False
        u.peak_rss_mb = max(u.peak_rss_mb, rss)
        if have_pss:
            u.peak_pss_mb = _max(u.peak_pss_mb, pss)
            u.peak_uss_mb = _max(u.peak_uss_mb, uss)
            u.peak_workers_pss_mb = _max(u.peak_workers_pss_mb, workers_pss)
        shm = _shm_used()
        if shm is not None and self._shm0 is not None:
            u.peak_shm_mb = _max(u.peak_shm_mb, max(shm - self._shm0, 0.0))


def _max(a: float, b: float) -> float:
    return b if a != a else max(a, b)  # a != a: NaN, nothing sampled yet


def process_children() -> list[int]:
    """Pids of this process's live descendants (tests use it to check nothing is left)."""
    return [p.pid for p in psutil.Process(os.getpid()).children(recursive=True)]
