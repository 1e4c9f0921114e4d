"""``sweep=tune``'s sweeper: the staged search of :mod:`loaderbench.tune`, its trials run
through Hydra's launcher, so they are child runs of the sweep's parent like any grid's, under
any launcher; a trial that fails is recorded FAILED and the search goes on.

Hydra finds sweepers only in the ``hydra_plugins`` package, and imports this module at every
start (its plugin scan): its module-level imports stay cheap, and the package (torch with it)
is imported only when a tune sweep starts.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hydra.plugins.sweeper import Sweeper

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from loaderbench.tune import Candidate, Trial

log = logging.getLogger("loaderbench.tune")  # the package's logger: its log config applies


class TuneSweeper(Sweeper):
    """``sweep=tune``: the staged search of :mod:`loaderbench.tune` through Hydra's launcher."""

    def __init__(self) -> None:
        self.config: Any = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        return run_search(self.config, self.launcher, arguments)


def override_value(v: Any) -> str:
    """A Hydra override value: null, true/false, or as written."""
    if v is None:
        return "null"
    return str(v).lower() if isinstance(v, bool) else str(v)


def split_arguments(arguments: Sequence[str], config: DictConfig) -> tuple[list[str], dict]:
    """The command line's overrides as (fixed overrides every trial gets, values that narrow a
    tuned knob). A sweep over any other key is an error: the tuner searches one workload."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from loaderbench.config import ConfigError
    from loaderbench.tune import BATCH, PINNABLE, tuned_keys

    tuned = set(tuned_keys(config))
    fixed, pinned = [], {}
    for o in OverridesParser.create().parse_overrides(list(arguments)):
        key = o.key_or_group
        if key in PINNABLE:
            values = o.sweep_string_iterator() if o.is_sweep_override() else [o.value()]
            pinned[key] = [override_value(v) if not isinstance(v, str) else v for v in values]
        elif key == BATCH and key in tuned and not o.is_sweep_override():
            continue  # the centre of the batch sizes searched (build_space reads the config)
        elif o.is_sweep_override() or key in tuned:
            raise ConfigError(
                f"{o.input_line}: sweep=tune searches the loader knobs itself and tunes one "
                "workload; give this key one value (or tune.batch_size=true to search batch "
                "sizes), or run a grid sweep with -m instead"
            )
        else:
            fixed.append(o.input_line)
    return fixed, pinned


def check(config: DictConfig, arguments: Sequence[str]) -> tuple[list[str], dict]:
    """The ``tune.*`` values and the command line, checked before the sweep's parent run is
    opened (a typo costs nothing); returns :func:`split_arguments`."""
    from loaderbench.config import TuneConfig

    TuneConfig.check(config.tune)
    return split_arguments(arguments, config)


def trial_overrides(
    fixed: Sequence[str], cand: Candidate, probe_batches: int | None, probe_share: float = 1.0
) -> list[str]:
    from loaderbench import keys

    settings = cand.settings() | {keys.PROBE_PARAM: probe_batches}
    if probe_batches is not None and probe_share < 1:  # a probe sized by the epoch too
        settings["bench.probe_share"] = probe_share
    return [*fixed, *(f"{k}={override_value(v)}" for k, v in settings.items())]


def describe(trials: list[Trial]) -> str:
    verdict = {True: " fed", False: " starved", None: ""}
    return ", ".join(
        f"{t.candidate.label} {t.value:.0f}/s{verdict[t.fed]}"
        if t.ok
        else f"{t.candidate.label} failed"
        for t in trials
    )


def objective(result: Any) -> float:
    """A trial's figure from its JobReturn: NaN when it failed (recorded FAILED by the job, or
    killed before it could return)."""
    from hydra.core.utils import JobStatus

    if result.status != JobStatus.COMPLETED:
        return math.nan
    value = result.return_value
    return float(value) if isinstance(value, (int, float)) else math.nan


def fed(result: Any) -> bool | None:
    """Whether a trial's emulated step was fed (the job's objective carries it, a
    :class:`loaderbench.record.Objective`), or None: another mode, or the trial failed."""
    if math.isnan(objective(result)):  # a failed JobReturn raises its error on return_value
        return None
    return getattr(result.return_value, "fed", None)


def probe_cost(search: Any) -> float:
    """A probe's wall time over the first full run's (nan before either ran)."""
    probes = [t.wall_s for t in search.done if t.probe]
    full = [t.wall_s for t in search.done if not t.probe]
    return sum(probes) / len(probes) / full[0] if probes and full and full[0] else math.nan


def worker_start_s(config: DictConfig) -> float:
    """How long a fresh interpreter takes to import what the job's workers import (torch,
    torchvision, loaderbench's data package, the dataset's own module): what a spawn or
    forkserver worker pays before its first sample, timed once, so that the cost cap counts
    the grid's runs of those contexts (:meth:`loaderbench.tune.Search.start_s`). An import that
    fails ends it sooner: the estimate errs low. NaN where it could not run."""
    import subprocess
    import sys

    from omegaconf import OmegaConf

    modules = ["torch", "torchvision", "loaderbench.data"]
    target = OmegaConf.select(config, "dataset.target", default=None, throw_on_missing=False)
    if isinstance(target, str) and "." in target:
        modules.append(target.rsplit(".", 1)[0])
    t0 = time.perf_counter()
    try:
        subprocess.run(
            [sys.executable, "-c", f"import {', '.join(modules)}"], capture_output=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return math.nan
    return time.perf_counter() - t0


def run_search(config: DictConfig, launcher: Any, arguments: Sequence[str]) -> list[Any]:
    """The staged search (see the module's docstring) through ``launcher``, one trial at a
    time: trials running side by side would compete for the cores they measure."""
    import psutil

    from loaderbench import keys
    from loaderbench.active import ACTIVE
    from loaderbench.tune import RESERVE, Search, Trial, accelerator, build_space

    t = config.tune
    fixed, pinned = check(config, arguments)
    space = build_space(config, pinned, accelerator(config))
    goal = "fed" if config.bench.mode == keys.MODE_EMULATED else "fastest"
    search = Search(space, t.probe_batches, t.trials, t.budget_s, t.confirm_within, goal)
    search.cost_share, search.epochs = t.get("cost_share"), config.trainer.epochs
    # the cap is on what the user's command costs: its own start (Python, Hydra, torch) too,
    # and as much again for what follows the search (the report, the exit)
    search.lead_s = max(time.time() - psutil.Process().create_time(), 0.0)
    search.started -= search.lead_s
    if search.cost_share is not None and any(c.context not in (None, "fork") for c in space.grid()):
        search.startup_s = worker_start_s(config)  # within the search's time: it is its cost
    returns: list[Any] = []

    def launch(cand: Candidate, probe: bool, repeat: int | None = None) -> Trial:
        probe_batches = search.probe_batches if probe else None
        batch = [trial_overrides(fixed, cand, probe_batches, t.get("probe_share", 1.0))]
        named = [*cand.settings(), keys.PROBE_PARAM]
        if repeat is not None:  # a second full run: the report groups it with the first
            batch[0].append(f"++{keys.REPEAT_PARAM}={repeat}")
            named.append(keys.REPEAT_PARAM)
        # the run is named by what it sets (w0-probe20, w2-fork-persist-pf2): jobs read this
        os.environ[keys.SWEPT_ENV] = ",".join(named)
        t0 = time.perf_counter()
        results = launcher.launch(batch, initial_job_idx=len(search.done))
        returns.append(results)
        trial = Trial(cand, probe, objective(results[0]), fed(results[0]))
        if trial.ok:  # the interval the report's noise rule reads (NaN: too short for one)
            trial.low = getattr(results[0].return_value, "low", math.nan)
            trial.high = getattr(results[0].return_value, "high", math.nan)
        trial.wall_s = time.perf_counter() - t0
        search.done.append(trial)
        return trial

    # The first trial runs in full: the reference (num_workers=0), and what a full run costs.
    if (first := search.first()) is not None:
        log.info("tune: %s", describe([launch(first, probe=False)]))
    reserve = 2 if len(space.workers) == 1 else RESERVE
    for i, (name, stage) in enumerate(search.stages()):
        trials, spent = [], False
        fresh = search.fresh(stage(search))
        for k, cand in enumerate(fresh):
            if spent := search.probes_left(reserve) == 0:
                if not search.within_cost():  # the cost cap: count what it leaves unprobed
                    later = search.stages()[i + 1 :]
                    search.skipped = len(fresh) - k
                    search.skipped += sum(len(search.fresh(f(search))) for _, f in later)
                rest = f"the rest of {name}" if k else name
                log.info("tune: the budget is spent; %s and later stages skipped", rest)
                break
            trials.append(launch(cand, probe=True))
            if search.enough(name):
                break
        if trials:
            log.info("tune, %s: %s", name, describe(trials))
        if spent:
            break
    if search.skipped:
        log.info(
            "tune: probes cost %.0f%% of a full run here, so %d candidates went unprobed to keep "
            "within tune.cost_share=%s of the grid's ~%.0f s",
            100 * probe_cost(search),
            search.skipped,
            search.cost_share,
            search.grid_s(),
        )
    ran = {tr.candidate for tr in search.done if not tr.probe}
    confirm = [launch(c, probe=False) for c in search.to_confirm() if c not in ran]
    confirm += [launch(c, probe=False, repeat=1) for c in search.to_settle()]
    probes = sum(t.probe for t in search.done)
    wall_s = search.elapsed_s
    log.info(
        "tune: %d trials (%d probes of %d batches an epoch, %d full runs: %s) in %.0f s",
        len(search.done),
        probes,
        search.probe_batches,
        len(confirm),
        describe(confirm),
        wall_s,
    )
    try:
        figures = {keys.TUNE_TRIALS: len(search.done), keys.TUNE_PROBES: probes}
        figures |= {keys.TUNE_WALL: wall_s, keys.TUNE_SKIPPED: search.skipped}
        if not math.isnan(grid := search.grid_s()):
            figures[keys.TUNE_GRID_S] = grid
        ACTIVE.log_on_parent(figures)
    except Exception as exc:  # the trials are recorded: the report must still follow
        log.warning("tune: the search's figures did not reach the parent run: %s", exc)
    return returns
