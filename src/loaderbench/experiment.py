"""One job: read the config tree, build everything, train while measuring, record the run.

This module and the two it drives, :mod:`loaderbench.job` (what is built and measured) and
:mod:`loaderbench.record` (what is recorded), read a job's config tree; a tune sweep's search
reads ``tune.*`` in :mod:`loaderbench.tune`. It reads as the job runs:

- :func:`prepare` checks the config and builds everything that can fail on bad input (device,
  loader values, dataset files, memory) before a run is opened in the tracking store, so a typo
  costs nothing and leaves nothing RUNNING;
- :func:`loaderbench.job.measure` trains while measuring: ranks × a loop over a loader (the
  ranks through :mod:`loaderbench.ranks`, which this module hands to it);
- :func:`run` opens the run, measures under the resource monitor and records how it ended
  (:mod:`loaderbench.record`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from loaderbench import config, job, keys, store, tracking, tracking_host
from loaderbench.active import ACTIVE
from loaderbench.config import ConfigError
from loaderbench.job import Setup
from loaderbench.launch import Launch
from loaderbench.naming import run_name
from loaderbench.record import Record
from loaderbench.resources import ResourceMonitor

__all__ = ["Launch", "Setup", "make_tracker", "prepare", "resolve_paths", "run"]
log = logging.getLogger(__name__)


def make_tracker(cfg: DictConfig, launch: Launch) -> tracking.Tracker:
    """The job's tracker: none with ``mlflow.enabled=false``, else the configured store,
    checked reachable before any work (a dead server, or one that wants credentials, is one
    line naming the URI), recorded from the tracking process (:mod:`loaderbench.tracking_host`)."""
    if not cfg.mlflow.enabled:
        return tracking.NullTracker()
    uri = store.resolve_tracking_uri(cfg.mlflow.tracking_uri, launch.launch_dir)
    store.check_reachable(uri)
    return tracking_host.HostedTracker(
        uri,
        cfg.mlflow.experiment,
        parent_run_id=os.environ.get(keys.PARENT_ENV) if launch.multirun else None,
        system_metrics=cfg.mlflow.system_metrics,
        offline_dir=Path(launch.output_dir or launch.launch_dir) / keys.OFFLINE_DIR,
        end_lost=not ACTIVE.launching_here(),  # a sweep launched here looked at its start
    )


PATH_KEYS = (  # config values that name files or folders
    "dataset.root",
    "dataset.path",
    "dataset.labels_path",
    "dataset.cache_dir",
    *(f"dataset.{kw}.{k}" for kw in ("kwargs", "val_kwargs") for k in ("root", "path")),
)


def resolve_paths(cfg: DictConfig, launch_dir: str) -> dict[str, str]:
    """Make relative paths absolute against the launch directory, in place, so the recorded
    config reproduces from anywhere (and a job that runs elsewhere, e.g. under submitit, reads
    the same files). Returns the original spellings of the paths it changed."""
    given = {}
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if isinstance(value, str) and value and not os.path.isabs(value):
            given[key] = value
            OmegaConf.update(cfg, key, os.path.normpath(os.path.join(launch_dir, value)))
    return given


def _check_required(cfg: DictConfig) -> None:
    """A mandatory value left as ``???`` (e.g. dataset.root) is a config error naming it."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"{exc.full_key} must be set: pass {exc.full_key}=...") from None


def prepare(cfg: DictConfig, launch_dir: str | None = None) -> Setup:
    """Check the config (every value set, every range) and build device, data, loaders, model
    and optimizer (:func:`loaderbench.job.build`; ``launch_dir``: where a relative tracking
    store lies, default the current directory)."""
    _check_required(cfg)
    config.check(cfg)
    return job.build(cfg, launch_dir)


def _run_ranks(cfg: DictConfig, setup: Setup, tracker: tracking.Tracker) -> list:
    """A job of several ranks (:mod:`loaderbench.ranks`): imported only when a job has them."""
    from loaderbench.ranks.agent import run_ranks

    return run_ranks(cfg, setup, tracker)


def run(
    cfg: DictConfig, tracker: tracking.Tracker | None = None, launch: Launch | None = None
) -> float:
    """Run one job; return its summary samples/s (the objective a Hydra sweeper can use), or
    for a probe its projection to full epochs.

    It ends one of three ways:

    - FINISHED: the summary recorded, its figure returned (NaN when some sample was not
      delivered exactly once: a tuner must not rank it);
    - KILLED, by Ctrl-C or SIGTERM: recorded with the signal's name, and the stop goes on up;
    - FAILED: recorded with ``error.txt``. In a multirun it returns NaN, so the sweep goes on;
      in a single run the error propagates.
    """
    wall0 = time.perf_counter()
    launch = launch or Launch.from_hydra()
    tracker = tracker or make_tracker(cfg, launch)
    name = run_name(cfg, launch.swept, launch.choices)  # the paths as typed, not resolved
    record = Record(cfg, tracker, launch, name, given=resolve_paths(cfg, launch.launch_dir))
    setup: Setup | None = None
    try:
        t0 = time.perf_counter()
        setup = prepare(cfg, launch.launch_dir)
        setup_s = time.perf_counter() - t0
        record.open(setup)
        if stats := job.data_stats(setup):
            tracker.log_metrics(stats)
        budget = cfg.bench.pss_budget
        with ResourceMonitor(cfg.bench.memory_interval_s, pss_budget=budget) as monitor:
            epochs = job.measure(cfg, setup, tracker, ranks=_run_ranks)
        wall_s = time.perf_counter() - wall0
        return record.finished(setup, epochs, monitor.usage, setup_s=setup_s, wall_s=wall_s)
    except KeyboardInterrupt as stop:  # stopping.Interrupted (SIGTERM) is one too
        record.killed(stop)
        raise
    except Exception as exc:
        record.failed(exc, setup)
        if not launch.multirun:
            raise
        log.error("job failed: %s: %s", type(exc).__name__, exc)
        return math.nan
    finally:
        if setup is not None and (stuck := job.close(setup)):
            _stuck(stuck, launch)


def _stuck(threads: list, launch: Launch) -> None:
    """Loader threads that outlived the job (stuck in ``__getitem__``): no thread can be stopped
    from outside, so where the next job would run in this process (an in-process sweep), the
    process ends (:class:`~loaderbench.data.faults.StuckLoader`, which ``loaderbench.cli``
    turns into one line); elsewhere the process ends with the job anyway."""
    from loaderbench.active import ACTIVE
    from loaderbench.data.faults import StuckLoader

    names = ", ".join(t.name for t in threads)
    log.error(
        "%d loader thread(s) still stuck in __getitem__ after the job: %s", len(threads), names
    )
    if launch.multirun and ACTIVE.launching_here():
        raise StuckLoader(f"{len(threads)} loader thread(s) stuck in __getitem__ ({names})")
