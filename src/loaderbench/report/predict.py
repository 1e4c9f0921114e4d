"""Training throughput predicted from the two ceilings, for every loader setting.

Inputs, all measured in the sweep (nothing is fitted to the training runs it is compared with):
- ``loader_only`` at each setting: the loader's steady speed ``L_s`` and its first-batch
  latency ``τ_s`` (worker start-up: paid every epoch unless the workers persist);
- ``loader_only`` at ``num_workers=0`` (same data and transforms): ``c_load``, the seconds one
  sample costs to load, decode, transform and collate in the main process;
- ``model_only`` (any loader setting: it trains on one cached batch): ``c_step``, the seconds
  of one sample's training step with torch's ``T`` intra-op threads, and ``u``, the cores the
  step kept busy (``cpu/utilization``; within 1..T);
- ``C``, the cores the process may use, and ``T`` (the runs' ``env.*`` tags).

The model, per sample in the steady state:
- ``num_workers=0``: one process loads, then steps: ``t = c_load + c_step``.
- ``w`` workers load while the main process steps. The step's ``u`` busy cores are its own:
  a parallel region waits for its slowest thread, so a worker that takes one of those cores
  stalls the whole step while the step's other threads spin. Loading overlaps with the step
  only on the ``F = min(C - u, w)`` cores the step leaves free; the rest of the workers'
  ``l = min(w, C) / L_s`` CPU seconds a sample stalls the step: ``t = c_step + (l - F * t)``,
  so ``t = (c_step + l) / (1 + F)``; or ``c_step`` when loading fits on the free cores
  (that formula then gives less). And ``t`` is at least the loader's own pace at that
  setting, ``1 / L_s`` (measured with the main process idle). With torch's default of one
  thread per core, ``F`` is about 0 and workers buy nothing but the start-up they cost; with
  ``torch.set_num_threads`` below the cores, or a step on an accelerator, the workers get
  cores of their own. (``l``, not ``c_load``: a worker runs torch on one thread, where the
  main process may spread a transform over ``T``; and ``l`` includes what handing batches
  between processes costs. Measured on 2 cores, ``c_load`` times the cores it kept busy put
  the prediction up to 26% low: scripts/bench_predict.py.)
An epoch is then ``τ_s + B * c_step + (N - B) * t`` (``N`` training samples, batch ``B``; the
first batch arrives after ``τ_s``, which with persistent workers is paid once, not per epoch).
The prediction is ``N`` over that, compared with the training run's ``summary/samples_per_s``
wherever the sweep trained that setting. Not modelled: the main process's cost of receiving a
batch from a worker (small on a CPU device), page-cache and memory-bandwidth effects, and
anything else running on the machine. ``T`` is the step's recorded ``effective.torch_threads``
(else ``env.torch_threads``). Where workers and a multi-threaded step share the cores
(``w + T > C``, ``T > 1``) the prediction is flagged *uncertain*: a worker that preempts one
of the step's threads stalls its whole parallel region, for longer than the worker's own CPU
time (measured on 2 cores, 2 threads: w1 and w2 fork over-predicted by 23–25%, the other
settings within 15%), and this model does not know by how much.

An ``emulated`` run's step uses no core, so its throughput follows from the loader's ceiling
and T alone (:func:`predict_emulated`): the loop's period per batch is ``L + T`` at
``num_workers=0`` with ``step_sync=step`` (load, then step, in turn) and ``max(L, T)``
otherwise (workers load while the step runs, or with ``none`` the loop loads while the device
does), ``L`` being ``loader_only``'s steady time per batch at that setting; the step waits
``period - T`` a step. An epoch is ``τ_s + (n - 1) × period + T`` over its ``n`` batches.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loaderbench import keys

if TYPE_CHECKING:  # the type is only an annotation here
    from loaderbench.report.rows import Group

MODE, WORKERS = keys.MODE_PARAM, keys.WORKERS_PARAM

LOADER_PROCESS_PARAMS = (  # what changes how, not what, the loader loads
    WORKERS,
    *keys.WORKER_ONLY_PARAMS,
    "loader.sharing_strategy",
    "loader.timeout",
)


@dataclass
class Costs:
    """The measured inputs of one setting's prediction (seconds per sample unless noted)."""

    workers: int
    loader_s: float  # 1 / L_s, steady (start-up taken out)
    startup_s: float  # τ_s per epoch
    c_load: float
    c_step: float
    step_cores: float  # u: cores the step keeps busy, within 1..T
    cores: int  # C
    threads: int  # T
    samples: int  # N per epoch


@dataclass
class Prediction:
    """One loader setting: predicted and (where trained) measured training samples/s."""

    setting: str
    predicted: float
    measured: float | None
    limit: str  # what bounds it: "the step", "the loader", "cores shared with the step"
    costs: Costs
    uncertain: str = ""  # why the model may miss here ("" where it applies)

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured, or None where the setting was not trained."""
        return None if self.measured is None else self.predicted / self.measured - 1


def steady_seconds(c: Costs) -> tuple[float, str]:
    """Seconds per sample in the steady state, and what bounds it (see the module)."""
    if c.workers == 0:
        return c.c_load + c.c_step, "load + step in one process"
    # CPU seconds of loading a sample in the workers (each runs torch on one thread, so not
    # c_load's multi-threaded cost): their pace at this setting, on the cores they had
    load = min(c.workers, c.cores) * c.loader_s
    free = min(max(c.cores - c.step_cores, 0.0), float(c.workers))  # cores the step leaves
    # What does not fit on the free cores stalls the step: t = c_step + (load - free * t).
    shared = (c.c_step + load) / (1 + free)  # below c_step when loading fits beside the step
    bounds = {"the step": c.c_step, "cores shared with the step": shared, "the loader": c.loader_s}
    limit = max(bounds, key=bounds.get)
    return bounds[limit], limit


def _param(g: Group, key: str, default: str = "") -> str:
    return g.runs[0].params.get(key, default)


def _int(g: Group, key: str, default: int) -> int:
    try:
        return int(float(_param(g, key, str(default))))
    except ValueError:
        return default


def _tag_int(groups: list[Group], key: str) -> int | None:
    for g in groups:
        for r in g.runs:
            if (v := r.tags.get(key, "")).isdigit():
                return int(v)
    return None


def _steady_loader(g: Group, samples: int, batch: int, epochs: int) -> tuple[float, float]:
    """(steady seconds per sample, start-up seconds per epoch) of a loader_only group."""
    per_epoch = samples / g.median()
    startup = g.median(keys.SUMMARY_FIRST_BATCH)
    persistent = _param(g, keys.PERSISTENT_EFFECTIVE) == "True"
    if _int(g, WORKERS, 0) and persistent:
        startup /= max(epochs, 1)
    steady = max(per_epoch - startup, 1e-12) / max(samples - batch, 1)
    return steady, startup


def _busy(groups: list[Group], threads: int) -> float:
    """Cores a process kept busy (``cpu/utilization``), within 1..``threads``: a running step
    keeps its own thread busy at least, and torch's threads at most."""
    busy = statistics.median(g.median(keys.CPU_UTILIZATION) for g in groups)
    return min(max(busy, 1.0), float(threads)) if math.isfinite(busy) else float(threads)


def predict(groups: list[Group]) -> list[Prediction]:
    """A prediction for every setting with a loader_only run, a num_workers=0 loader_only run
    of the same data and a model_only run of the same training; none otherwise."""
    by_mode: dict[str, list[Group]] = {}
    for g in groups:
        by_mode.setdefault(g.runs[0].mode, []).append(g)
    loaders, models = by_mode.get("loader_only", []), by_mode.get("model_only", [])
    trains = {g.without(MODE): g for g in by_mode.get(keys.MODE_TRAIN, [])}
    out = []
    for g in loaders:
        data_key = g.without(MODE, *LOADER_PROCESS_PARAMS)
        w0 = [
            r
            for r in loaders
            if r.without(MODE, *LOADER_PROCESS_PARAMS) == data_key and _int(r, WORKERS, -1) == 0
        ]
        training = g.without(MODE, *keys.TRAINING_INVARIANT_PARAMS)
        model = [m for m in models if m.without(MODE, *keys.TRAINING_INVARIANT_PARAMS) == training]
        if not w0 or not model:
            continue
        samples = _int(g, keys.TRAIN_SIZE_PARAM, 0)
        batch, epochs = _int(g, keys.BATCH_SIZE_PARAM, 1), _int(g, keys.EPOCHS_PARAM, 1)
        if samples <= batch:
            continue
        loader_s, startup = _steady_loader(g, samples, batch, epochs)
        c_load = statistics.median(_steady_loader(r, samples, batch, epochs)[0] for r in w0)
        c_step = statistics.median(1 / m.median() for m in model)
        cores = _tag_int(model, keys.CPU_AFFINITY_TAG) or _tag_int(model, keys.CPU_COUNT_TAG) or 1
        threads = _threads(model) or cores
        costs = Costs(
            workers=_int(g, WORKERS, 0),
            loader_s=loader_s,
            startup_s=startup,
            c_load=c_load,
            c_step=c_step,
            step_cores=_busy(model, threads),
            cores=cores,
            threads=threads,
            samples=samples,
        )
        t, limit = steady_seconds(costs)
        predicted = samples / (startup + batch * c_step + (samples - batch) * t)
        if not math.isfinite(predicted):  # an input from a run that failed
            continue
        train = trains.get(g.without(MODE))
        setting = ", ".join(f"{k}={v}" for k, v in g.without(MODE)) or g.label
        measured = train.median() if train else None
        out.append(Prediction(setting, predicted, measured, limit, costs, uncertain(costs)))
    return out


def _threads(groups: list[Group]) -> int | None:
    """The step's torch threads as recorded: ``effective.torch_threads``, else the env tag."""
    for g in groups:
        if (v := _param(g, keys.TORCH_THREADS_EFFECTIVE)).isdigit():
            return int(v)
    return _tag_int(groups, keys.TORCH_THREADS_TAG)


def uncertain(c: Costs) -> str:
    """Why the model may miss at this setting, or "" (see the module)."""
    if c.workers == 0 or c.threads <= 1 or c.workers + c.threads <= c.cores:
        return ""
    return (
        f"{c.workers} workers and a {c.threads}-thread step share {c.cores} cores: a worker "
        "that preempts one of the step's threads stalls its whole parallel region, by more "
        "than the worker's CPU time (measured: 23–25% over-predicted at 1 and 2 forked "
        f"workers beside 2 threads on 2 cores); trainer.torch_threads={max(c.cores - c.workers, 1)}"
        " leaves the workers cores of their own"
    )


@dataclass
class EmulatedPrediction:
    """One emulated setting: throughput and wait per step, predicted from ``loader_only``'s
    ceiling and T, against measured."""

    setting: str
    step_ms: float
    sync: str
    loader_ms: float  # L: loader_only's steady time per batch at this setting
    predicted: float  # samples/s
    measured: float
    wait_ms: float  # predicted wait per step
    measured_wait_ms: float

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1 if self.measured > 0 else math.nan


def emulated_period_ms(loader_ms: float, step_ms: float, workers: int, sync: str) -> float:
    """The loop's time per batch (see the module): in turn at num_workers=0 with
    step_sync=step, overlapped everywhere else."""
    if workers == 0 and sync == "step":
        return loader_ms + step_ms
    return max(loader_ms, step_ms)


def predict_emulated(groups: list[Group]) -> list[EmulatedPrediction]:
    """A prediction for every emulated group with a loader_only group of the same setting and
    data (anything but the step's own keys equal)."""
    step_keys = (MODE, *keys.STEP_PARAMS, keys.STEP_SYNC_PARAM)
    loaders = {g.without(*step_keys): g for g in groups if g.runs[0].mode == "loader_only"}
    out = []
    for g in (g for g in groups if g.runs[0].mode == keys.MODE_EMULATED):
        lo = loaders.get(g.without(*step_keys))
        samples = _int(g, keys.TRAIN_SIZE_PARAM, 0)
        batch, epochs = _int(g, keys.BATCH_SIZE_PARAM, 1), _int(g, keys.EPOCHS_PARAM, 1)
        step_ms = float(_param(g, keys.STEP_MS_EFFECTIVE, "nan"))
        if lo is None or samples <= batch or not step_ms > 0:
            continue
        loader_s, startup = _steady_loader(lo, samples, batch, epochs)
        loader_ms, sync = 1e3 * loader_s * batch, _param(g, keys.STEP_SYNC_PARAM, "step")
        period = emulated_period_ms(loader_ms, step_ms, _int(g, WORKERS, 0), sync)
        batches = math.ceil(samples / batch)
        epoch_s = startup + ((batches - 1) * period + step_ms) / 1e3
        setting = ", ".join(f"{k}={v}" for k, v in g.without(MODE)) or g.label
        predicted, measured = samples / epoch_s, g.median()
        wait, measured_wait = period - step_ms, g.median(keys.SUMMARY_STEP_WAIT)
        out.append(
            EmulatedPrediction(
                setting, step_ms, sync, loader_ms, predicted, measured, wait, measured_wait
            )
        )
    return out
