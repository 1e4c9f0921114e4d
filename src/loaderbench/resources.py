"""Memory and CPU of the main process and its DataLoader workers, sampled during a run.

RSS alone double-counts pages that workers share with the main process (a forked dataset) and
hides copy-on-read growth; PSS splits shared pages between the processes that map them and USS
counts only a process's own pages, so the sum of PSS is the tree's real footprint and workers'
PSS growth (their USS: pages only they hold) is the copy-on-read cost. RssAnon is the anonymous part of RSS: what a memory map of
a file does not count. Shared memory (``/dev/shm``), where worker batches travel to the main
process, is sampled too (the growth over the run's start).

The instrument must not disturb what it measures, so it samples in two tiers (Linux):
- every ``interval_s``: ``/proc/PID/status`` of each process (RSS, RssAnon) and /dev/shm,
  ~15 µs a process;
- PSS/USS from ``/proc/PID/smaps_rollup``, which walks the page tables: ~13 ms per GB of RSS
  (measured, 2-core VM). Those reads are spaced so they cost at most ``pss_budget`` of one core
  (default 0.5%), and one is taken whenever RSS reaches a new high, budget permitting.
So RSS and RssAnon peaks are resolved to ``interval_s``; a PSS/USS peak shorter than the PSS
spacing (logged as ``overhead/monitor_pss_samples`` over the run) can be missed. The sampler's
own CPU time (thread CPU clock, kernel time of the reads included) is reported, so its cost is
a measured figure, not a claim. Elsewhere psutil gives RSS only.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass

import psutil

from loaderbench import keys

log = logging.getLogger(__name__)
MB = 1024 * 1024
SHM = "/dev/shm"
LINUX = sys.platform.startswith("linux")
PSS_BUDGET = 0.005  # of one core, for PSS/USS reads (bench.pss_budget=... raises it)


@dataclass
class ResourceUsage:
    peak_rss_mb: float = 0.0  # main + workers
    peak_anon_mb: float = float("nan")  # main + workers, anonymous pages only (Linux)
    peak_pss_mb: float = float("nan")  # main + workers (Linux)
    peak_uss_mb: float = float("nan")
    peak_workers_pss_mb: float = float("nan")  # workers only
    peak_workers_uss_mb: float = float("nan")  # workers' private pages only
    peak_shm_mb: float = float("nan")
    cpu_utilization: float = float("nan")  # process-tree CPU seconds / wall seconds
    monitor_cpu_s: float = 0.0  # the sampler's own CPU seconds
    samples: int = 0
    pss_samples: int = 0
    saw_workers: bool = False  # a sample found child processes (the loader's workers)

    def metrics(self, wall_s: float) -> dict[str, float]:
        """The contract's keys (a figure not measured here, e.g. PSS off Linux, is left out).

        ``overhead/monitor_cpu_fraction`` is the sampler's CPU over the run's ``wall_s``."""
        values = {
            keys.PEAK_RSS: self.peak_rss_mb,
            keys.PEAK_ANON: self.peak_anon_mb,
            keys.PEAK_PSS: self.peak_pss_mb,
            keys.PEAK_USS: self.peak_uss_mb,
            # No worker ever: truly 0. Workers seen, but no PSS read while they lived: unknown,
            # left out rather than logged as a free 0.
            keys.WORKERS_PSS: self.peak_workers_pss_mb if self.saw_workers else 0.0,
            keys.WORKERS_USS: self.peak_workers_uss_mb if self.saw_workers else 0.0,
            keys.PEAK_SHM: self.peak_shm_mb,
            keys.CPU_UTILIZATION: self.cpu_utilization,
            keys.MONITOR_CPU_FRACTION: self.monitor_cpu_s / wall_s,
            keys.MONITOR_SAMPLES: self.samples,
            keys.MONITOR_PSS_SAMPLES: self.pss_samples,
        }
        return {k: v for k, v in values.items() if not math.isnan(v)}


def _shm_used() -> float | None:
    try:
        return shutil.disk_usage(SHM).used / MB
    except OSError:
        return None


def _read_kb(path: str, fields: tuple[bytes, ...]) -> dict[bytes, int] | None:
    """``Name:   123 kB`` lines of a /proc file, for ``fields``; None if the process is gone."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError:  # exited between listing and reading, or not ours to read
        return None
    found = {}
    for line in text.splitlines():
        name, _, rest = line.partition(b":")
        if name in fields:
            found[name] = int(rest.split()[0])
    return found


# The tool's own helper processes (the tracking process, loaderbench.tracking_host): not the
# job's, so left out of its tree, with whatever they start.
OWN_HELPERS: set[int] = set()


def _descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` from ``/proc/PID/task/TID/children`` (no scan of /proc),
    less :data:`OWN_HELPERS` and theirs."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split() if int(k) not in OWN_HELPERS]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _children(proc: psutil.Process) -> list[psutil.Process]:
    """``proc``'s live descendants, less :data:`OWN_HELPERS` (which start none)."""
    return [c for c in proc.children(recursive=True) if c.pid not in OWN_HELPERS]


class ResourceMonitor:
    """A daemon thread that samples the process tree; ``usage`` holds the peaks afterwards.

    Use as a context manager. :meth:`sample` takes a full sample (PSS included) at once, e.g.
    at a moment a caller knows is interesting.
    """

    def __init__(self, interval_s: float = 0.2, *, pss_budget: float = PSS_BUDGET):
        self.interval_s, self.pss_budget = interval_s, pss_budget
        self.usage = ResourceUsage()
        self._pid = os.getpid()
        self._proc = psutil.Process(self._pid)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # sample() may run in the caller's thread too
        self._last_pss, self._pss_spacing = 0.0, interval_s
        self._pss_high_rss = 0.0  # tree RSS at the last PSS read: a new high earns another
        self._thread = threading.Thread(target=self._run, name="loaderbench-resources", daemon=True)

    # CPU: own + reaped children (exact, from the kernel) + live children (last sample).
    def _tree_cpu(self) -> float:
        t = self._proc.cpu_times()
        live = 0.0
        for child in _children(self._proc):
            try:
                c = child.cpu_times()
                live += c.user + c.system
            except psutil.Error:
                pass
        return t.user + t.system + t.children_user + t.children_system + live

    def __enter__(self) -> ResourceMonitor:
        self._shm0 = _shm_used()
        self._cpu0, self._wall0 = self._tree_cpu(), time.perf_counter()
        self._sample(full=False)  # the first tick reads PSS too: a new high, nothing read yet
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(full=self.usage.pss_samples == 0)  # PSS within budget, or if never read
        wall = time.perf_counter() - self._wall0
        if wall > 0:
            self.usage.cpu_utilization = (self._tree_cpu() - self._cpu0) / wall

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample(full=False)
            except Exception:  # a sampling hiccup must never kill the run
                log.debug("resource sample failed", exc_info=True)

    def sample(self) -> None:
        """A full sample now (PSS/USS included), whatever the budget says."""
        self._sample(full=True)

    def _sample(self, *, full: bool) -> None:
        cpu0 = time.thread_time()
        with self._lock:
            if LINUX:
                self._sample_proc(full)
            else:
                self._sample_psutil()
            shm = _shm_used()
            u = self.usage
            if shm is not None and self._shm0 is not None:
                u.peak_shm_mb = _max(u.peak_shm_mb, max(shm - self._shm0, 0.0))
            u.samples += 1
            u.monitor_cpu_s += time.thread_time() - cpu0

    def _sample_proc(self, full: bool) -> None:
        u, pids = self.usage, [self._pid, *_descendants(self._pid)]
        rss = anon = 0.0
        for pid in pids:
            m = _read_kb(f"/proc/{pid}/status", (b"VmRSS", b"RssAnon"))
            if m:
                rss += m.get(b"VmRSS", 0) / 1024
                anon += m.get(b"RssAnon", 0) / 1024
        u.peak_rss_mb = max(u.peak_rss_mb, rss)
        u.peak_anon_mb = _max(u.peak_anon_mb, anon)
        u.saw_workers |= len(pids) > 1
        now = time.perf_counter()
        since = now - self._last_pss
        new_high = rss > self._pss_high_rss * 1.02
        # Within budget: at a new RSS high, or at least every 10 budget spacings; and once as
        # soon as workers exist, so that a short run still measures them.
        first_workers = len(pids) > 1 and math.isnan(u.peak_workers_pss_mb)
        if (
            full
            or first_workers
            or (since >= self._pss_spacing and (new_high or since >= 10 * self._pss_spacing))
        ):
            t0 = time.thread_time()
            self._sample_pss(pids)
            cost = time.thread_time() - t0
            self._last_pss, self._pss_high_rss = now, max(self._pss_high_rss, rss)
            self._pss_spacing = max(self.interval_s, cost / self.pss_budget)

    def _sample_pss(self, pids: list[int]) -> None:
        u = self.usage
        pss = uss = workers = workers_uss = 0.0
        fields = (b"Pss", b"Private_Clean", b"Private_Dirty")
        for i, pid in enumerate(pids):
            m = _read_kb(f"/proc/{pid}/smaps_rollup", fields)
            if not m:
                continue
            private = (m.get(b"Private_Clean", 0) + m.get(b"Private_Dirty", 0)) / 1024
            pss += m.get(b"Pss", 0) / 1024
            uss += private
            if i > 0:
                workers += m.get(b"Pss", 0) / 1024
                workers_uss += private
        if pss > 0:
            u.peak_pss_mb = _max(u.peak_pss_mb, pss)
            u.peak_uss_mb = _max(u.peak_uss_mb, uss)
            if len(pids) > 1:  # workers alive in this read
                u.peak_workers_pss_mb = _max(u.peak_workers_pss_mb, workers)
                u.peak_workers_uss_mb = _max(u.peak_workers_uss_mb, workers_uss)
            u.pss_samples += 1

    def _sample_psutil(self) -> None:
        rss = 0.0
        for proc in [self._proc, *_children(self._proc)]:
            try:
                rss += proc.memory_info().rss / MB
            except psutil.Error:
                continue
        self.usage.peak_rss_mb = max(self.usage.peak_rss_mb, rss)


def _max(a: float, b: float) -> float:
    return b if a != a else max(a, b)  # a != a: NaN, nothing sampled yet
