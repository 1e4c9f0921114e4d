"""An accelerator's training step, emulated: the device is busy for T while the CPU is free.

``bench.mode=emulated`` (DLIO's idea, argonne-lcf/dlio_benchmark: size an input pipeline
without the accelerator) moves each batch to the device as training does, then runs a step of
T milliseconds that uses no core and holds no GIL:

- on a CPU device, a sleep. With ``step_sync=none`` nothing sleeps at the launch: a timeline
  keeps when each queued step ends, and the loop waits for the oldest only when
  :data:`DEPTH` are in flight;
- on CUDA, a real device wait: ``torch.cuda._sleep`` spins the SMs for T on the current stream
  (its cycles from the device's clock rate, calibrated once with CUDA events), so the stream is
  busy as in a real step and the copies queued behind it wait for it.

``step_sync=step`` waits for each step before fetching the next batch (a loop that reads
``loss.item()`` every step); ``none`` queues up to :data:`DEPTH` steps and fetches meanwhile.
Either way the step records how long it waited for its batch (the device idle since the step
before it ended): what :mod:`loaderbench.feeding` judges. T comes from :func:`resolve_step`.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch

from loaderbench import keys
from loaderbench.config import ConfigError

log = logging.getLogger(__name__)
DEPTH = 2  # steps in flight with step_sync=none: a loop one step ahead of its device


@dataclass(frozen=True)
class StepTime:
    """T, and where it came from (recorded as ``effective.step_ms`` and its reason)."""

    per_batch_ms: float | None  # bench.step_ms or step_from's figure
    per_sample_ms: float | None  # bench.step_per_sample_ms
    batch_size: int
    source: str

    @property
    def ms(self) -> float:
        """T for a full batch."""
        if self.per_batch_ms is not None:
            return self.per_batch_ms
        return self.per_sample_ms * self.batch_size  # type: ignore[operator]

    def seconds(self, samples: int) -> float:
        """The step on a batch of ``samples`` (a short last batch is quicker per sample only
        when T is per sample, as a real step's would be)."""
        if self.per_batch_ms is not None:
            return self.per_batch_ms / 1e3
        return self.per_sample_ms * samples / 1e3  # type: ignore[operator]


def compute_per_batch_ms(run: Any) -> float:
    """A recorded run's steady compute per batch in ms: its ``summary/compute_per_batch_ms``,
    else (a run recorded before that key) its last epoch's ``time/compute_s`` over the batches
    that epoch held. NaN when it has neither (not a train or model_only run)."""
    metrics, params = run.data.metrics, run.data.params
    if params.get(keys.MODE_PARAM, keys.MODE_TRAIN) not in (keys.MODE_TRAIN, "model_only"):
        return math.nan
    if keys.SUMMARY_COMPUTE_PER_BATCH in metrics:
        return metrics[keys.SUMMARY_COMPUTE_PER_BATCH]
    try:
        samples = metrics[keys.SAMPLES_PER_S] * metrics[keys.EPOCH_S]
        batches = math.ceil(round(samples) / int(params[keys.BATCH_SIZE_PARAM]))
        return 1e3 * metrics[keys.COMPUTE_S] / batches
    except (KeyError, ValueError, ZeroDivisionError):
        return math.nan


def resolve_step(
    bench: Any, batch_size: int, tracking_uri: str | None, launch_dir: str
) -> StepTime:
    """T from the one step key that is set (:meth:`BenchConfig.check_step` made sure);
    ``bench.step_from`` reads the run from the configured tracking store (``mlflow.tracking_uri``
    as the job would resolve it, whether or not this job records)."""
    if bench.step_ms is not None:
        return StepTime(float(bench.step_ms), None, batch_size, f"bench.step_ms={bench.step_ms}")
    if bench.step_per_sample_ms is not None:
        per = float(bench.step_per_sample_ms)
        why = f"bench.step_per_sample_ms={per:g} x {batch_size} samples a batch"
        return StepTime(None, per, batch_size, why)
    from loaderbench import store, tracking_host

    run_id, key = str(bench.step_from), f"bench.step_from={bench.step_from}"
    fix = "give the id of a recorded model_only or train run (the MLflow UI shows it)"
    uri = store.resolve_tracking_uri(tracking_uri, launch_dir)
    try:  # read in the tracking process: this one, which forks the workers, never holds MLflow
        ms, params, device = tracking_host.call(_recorded_step, uri, run_id)
    except store.NotInStore as exc:
        raise ConfigError(f"{key}: {exc}; {fix}") from None
    mode = params.get(keys.MODE_PARAM, keys.MODE_TRAIN)
    if not (math.isfinite(ms) and ms > 0):
        raise ConfigError(
            f"{key}: run {run_id} ({mode}) has no compute figure "
            f"({keys.SUMMARY_COMPUTE_PER_BATCH}, or {keys.COMPUTE_S} per batch); {fix}"
        )
    theirs = params.get(keys.BATCH_SIZE_PARAM, "?")
    if theirs != str(batch_size):
        log.warning(
            "%s: run %s stepped batches of %s, this run's are %d: T is its figure per batch",
            key,
            run_id,
            theirs,
            batch_size,
        )
    why = f"run {run_id}'s compute per batch ({mode}, batch {theirs}, on {device})"
    return StepTime(ms, None, batch_size, why)


def _recorded_step(tracking_uri: str, run_id: str) -> tuple[float, dict[str, str], str]:
    """A recorded run's compute per batch, its params and its device (in the tracking process)."""
    from loaderbench import store

    run = store.get_run(store.open_store(tracking_uri, must_exist=True), run_id)
    return (
        compute_per_batch_ms(run),
        dict(run.data.params),
        run.data.tags.get("env.device_name", "?"),
    )


class CpuStep:
    """The step as a sleep (no core used, GIL released), on a timeline of when steps end.
    ``clock`` and ``sleep`` are the real ones but for tests, which pass a fake pair."""

    def __init__(
        self,
        step: StepTime,
        sync: str,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,  # releases the GIL and the core
    ):
        self.step, self.sync, self.clock, self.sleep = step, sync, clock, sleep
        self._queued: deque[float] = deque()  # ends of the steps still in flight (sync=none)
        self._last_end: float | None = None  # when the latest step ends (or ended)
        self.waits: list[float] = []  # idle seconds before each step but the epoch's first

    def _sleep_until(self, deadline: float) -> None:
        if (left := deadline - self.clock()) > 0:
            self.sleep(left)

    def __call__(self, samples: int) -> None:
        now = self.clock()
        if self.sync == "none":
            while self._queued and self._queued[0] <= now:
                self._queued.popleft()
            if len(self._queued) >= DEPTH:  # the launch blocks, as a full queue does
                self._sleep_until(self._queued.popleft())
                now = self.clock()
        start = now if self._last_end is None else max(now, self._last_end)
        if self._last_end is not None:
            self.waits.append(start - self._last_end)
        end = start + self.step.seconds(samples)
        if self.sync == "step":
            self._sleep_until(end)
            end = self.clock()  # the loop goes on when it wakes: its next wait starts here
        else:
            self._queued.append(end)
        self._last_end = end

    def drain(self) -> None:
        """Wait for every queued step (an epoch's end and the warm-up's are window edges)."""
        if self._queued:
            self._sleep_until(self._queued[-1])
            self._queued.clear()

    def take_waits(self) -> list[float]:
        """The idle seconds before each step since the last call (drained); a fresh timeline."""
        self.drain()
        waits, self.waits, self._last_end = self.waits, [], None
        return waits


@cache
def cycles_per_ms(index: int) -> float:
    """``torch.cuda._sleep``'s cycles a millisecond on device ``index``: the clock rate it reports
    (kHz, which is cycles per ms), corrected by timing sleeps of about 50 ms with CUDA events
    (the SMs may clock above or below that rate; a sleep much shorter than 50 ms is re-sized
    first, so launch overhead cannot skew the figure)."""
    rate = float(getattr(torch.cuda.get_device_properties(index), "clock_rate", 0) or 1e6)
    with torch.cuda.device(index):
        torch.cuda._sleep(int(rate))  # the first launch also loads the kernel: not timed
        rates = []
        for _ in range(5):
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            cycles = int(50 * rate)
            start.record()
            torch.cuda._sleep(cycles)
            end.record()
            end.synchronize()
            if (ms := start.elapsed_time(end)) <= 0:
                continue
            rate = cycles / ms
            if ms >= 25:  # long enough that the figure is the clock's, not the launch's
                rates.append(rate)
            if len(rates) == 3:
                break
    return statistics.median(rates) if rates else rate


class CudaStep:
    """The step as ``torch.cuda._sleep`` on the device's current stream, between two timing
    events (the waits are the gaps between one step's end event and the next one's start)."""

    def __init__(self, step: StepTime, sync: str, device: torch.device):
        self.step, self.sync, self.device = step, sync, device
        index = device.index if device.index is not None else torch.cuda.current_device()
        self.cycles_per_ms = cycles_per_ms(index)
        self._queued: deque[Any] = deque()  # end events of the steps in flight (sync=none)
        self._events: list[tuple[Any, Any]] = []  # (start, end) of this epoch's steps

    def __call__(self, samples: int) -> None:
        cycles = int(self.step.seconds(samples) * 1e3 * self.cycles_per_ms)
        with torch.cuda.device(self.device):
            while len(self._queued) >= DEPTH:
                self._queued.popleft().synchronize()  # releases the GIL while it waits
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            torch.cuda._sleep(cycles)
            end.record()
        self._events.append((start, end))
        if self.sync == "step":
            end.synchronize()  # as loss.item() would
        else:
            self._queued.append(end)

    def drain(self) -> None:
        torch.cuda.synchronize(self.device)
        self._queued.clear()

    def take_waits(self) -> list[float]:
        self.drain()
        pairs, self._events = self._events, []
        return [
            max(a_end.elapsed_time(b_start), 0.0) / 1e3
            for (_, a_end), (b_start, _) in zip(pairs, pairs[1:], strict=False)
        ]


def make_step(step: StepTime, sync: str, device: torch.device) -> CpuStep | CudaStep:
    """The emulated step for ``device``: a device wait on CUDA, a sleep elsewhere (on MPS too:
    torch has no sleep kernel there, so the CPU form stands in for it)."""
    return CudaStep(step, sync, device) if device.type == "cuda" else CpuStep(step, sync)
