"""What ``run.py`` calls: one job, with bad input turned into a one-line error, and the whole
command, with a signal turned into a clean stop.

SIGTERM (``kill``, Slurm's preemption and ``scancel``) and SIGINT (Ctrl-C) end the same way:
the current run and the sweep's parent are marked KILLED with the signal's name, the workers
are stopped and joined, the report of the jobs that finished is written, one line says so, and
the exit code is 128 + the signal's number. No traceback: an interruption is not a bug.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig

from loaderbench.config import ConfigError

log = logging.getLogger("loaderbench")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised in the main thread wherever it was; KeyboardInterrupt's subclass,
    so every ``except KeyboardInterrupt`` clean-up runs for SIGTERM too."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.name = signum, signal.Signals(signum).name
        self.run_id: str | None = None  # set by the job that was running, if any


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


_WORKER_STOPPED = re.compile(r"killed by signal: (Terminated|Interrupt)")


def stopped_with_workers(exc: BaseException) -> KeyboardInterrupt | None:
    """The stop signal behind a DataLoader error, or None. A stop signal (scancel, kill of the
    group, Ctrl-C) reaches the workers too, and torch reports their deaths as a RuntimeError:
    raised while this process handles its own signal, or before its own arrives."""
    if isinstance(exc.__context__, KeyboardInterrupt):
        return exc.__context__
    seen: BaseException | None = exc
    while seen is not None:
        if m := _WORKER_STOPPED.search(str(seen)):
            return Interrupted(signal.SIGTERM if m.group(1) == "Terminated" else signal.SIGINT)
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Record a stop without being cut short: the stop signals (a second one arrives apart
    from the first when the workers got their own) and torch's SIGCHLD report of dying workers
    are ignored meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = (*STOP_SIGNALS, signal.SIGCHLD)
    before = {s: signal.signal(s, signal.SIG_DFL if s == signal.SIGCHLD else signal.SIG_IGN)
              for s in held}  # fmt: skip
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def install_signal_handlers() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_interrupted)


def _in_a_launched_job() -> bool:
    """A job of a sweep whose launching process is another one (submitit, Slurm): there,
    this process must handle its own stop signal and let the sweep go on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from loaderbench import sweep

    return (
        HydraConfig.initialized()
        and HydraConfig.get().mode == RunMode.MULTIRUN
        and not sweep.launching_here()
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
        what = f"run {exc.run_id} marked KILLED" if exc.run_id else "before its run began"
        log.error("interrupted by %s: %s; the sweep goes on", exc.name, what)
        return float("nan")


def main(hydra_main: Callable[[], Any]) -> None:
    """Run the Hydra entry point; a stop signal ends it with one line and 128 + signum."""
    install_signal_handlers()
    try:
        hydra_main()
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        name = signal.Signals(signum).name
        parts = []
        if run_id := getattr(exc, "run_id", None):
            parts.append(f"run {run_id}")
        sweep = sys.modules.get("loaderbench.sweep")
        summary = sweep.interrupt_active_sweep(name) if sweep is not None else None
        if summary:
            parts.append(summary.subject)
        line = f"interrupted by {name}"
        if parts:
            line += f": {' and '.join(parts)} marked KILLED"
        if summary:
            line += f"; {summary.finished} of {summary.total} jobs finished"
        print(line, file=sys.stderr, flush=True)
        sys.exit(128 + signum)
