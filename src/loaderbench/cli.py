"""What ``run.py`` calls: one job, with bad input turned into a one-line error, and the whole
command, with a signal turned into a clean stop.

SIGTERM (``kill``, Slurm's preemption and ``scancel``) and SIGINT (Ctrl-C) end the same way:
the current run and the sweep's parent are marked KILLED with the signal's name, the workers
are stopped and joined, the report of the jobs that finished is written, one line says so, and
the exit code is 128 + the signal's number. No traceback: an interruption is not a bug. The
signals themselves are :mod:`loaderbench.stopping`'s; what is open here, :mod:`loaderbench.active`'s.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from loaderbench import keys
from loaderbench.active import ACTIVE
from loaderbench.config import ConfigError
from loaderbench.stopping import Interrupted, install_signal_handlers

log = logging.getLogger("loaderbench")
STUCK = "stuck_loader_thread"  # the killed_by of a sweep a stuck loader thread ended


def _in_a_launched_job() -> bool:
    """A job of a sweep whose launching process is another one (submitit, Slurm): there,
    this process must handle its own stop signal and let the sweep go on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return (
        HydraConfig.initialized()
        and HydraConfig.get().mode == RunMode.MULTIRUN
        and not ACTIVE.launching_here()
    )


def run_job(cfg: DictConfig) -> float:
    from loaderbench.data.faults import LoaderFailure
    from loaderbench.experiment import run

    launched = _in_a_launched_job()
    if launched:
        # submitit ignores SIGTERM in its jobs ("Bypassing signal SIGTERM"), and Slurm sends it
        # at scancel and preemption, then SIGKILL after a grace period: the run would stay
        # RUNNING and its workers die unjoined. Take it back.
        install_signal_handlers()
    try:
        return run(cfg)
    except ConfigError as exc:  # single run: the message names the key and the fix
        log.error("error: %s", exc)
        sys.exit(2)
    except LoaderFailure as exc:  # recorded FAILED with its traceback; here, cause and fix
        log.error("error: %s", exc)
        sys.exit(1)
    except Interrupted as exc:
        if not launched:
            raise  # this process runs the sweep: main() closes it
        # The run is KILLED with the signal's name and its workers are joined; the sweep's
        # other jobs go on, and its report lists this one.
        run_id = ACTIVE.take_stopped_run()
        what = f"run {run_id} marked KILLED" if run_id else "before its run began"
        log.error("interrupted by %s: %s; the sweep goes on", exc.name, what)
        return float("nan")


def main(hydra_main: Callable[[], Any]) -> None:
    """Run the Hydra entry point; a stop signal ends it with one line and 128 + signum, a
    loader thread stuck past its job with one line and 1."""
    from loaderbench.data.faults import StuckLoader

    install_signal_handlers()
    try:
        hydra_main()
    except StuckLoader as exc:  # the job is recorded FAILED; the sweep cannot go on beside it
        summary = ACTIVE.interrupt(STUCK)
        line = f"error: {exc}: this process ends rather than run the next job beside it"
        if summary:
            line += (
                f"; {summary.subject} marked KILLED ({keys.KILLED_BY_TAG}={STUCK}), "
                f"{summary.finished} of {summary.total} jobs finished"
            )
        print(line, file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        name = signal.Signals(signum).name
        parts = []
        if run_id := ACTIVE.take_stopped_run():
            parts.append(f"run {run_id}")
        summary = ACTIVE.interrupt(name)
        if summary:
            parts.append(summary.subject)
        line = f"interrupted by {name}"
        if parts:
            line += f": {' and '.join(parts)} marked KILLED"
        if summary:
            line += f"; {summary.finished} of {summary.total} jobs finished"
        print(line, file=sys.stderr, flush=True)
        sys.exit(128 + signum)
