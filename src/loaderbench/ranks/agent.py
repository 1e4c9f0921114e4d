"""The launching side of a multi-rank job: torch's elastic agent starts the ranks, this process
keeps the run.

``elastic_launch`` (what ``torchrun --standalone --nproc-per-node N`` runs) starts N ranks with
the spawn method and a c10d rendezvous on localhost, and restarts nothing (a failed rank fails
the job). Each rank gets the job's resolved config and a queue (:func:`loaderbench.ranks.rank.main`);
rank 0 sends each epoch's figures of every rank, which a thread here records in the job's one
run as they come (:class:`Reports`), merged (:mod:`loaderbench.ranks.merge`). The resource monitor
of the launching process sees every rank and its workers: they are its descendants.

Stops stay the project's (:mod:`loaderbench.stopping`): the agent handles SIGTERM and SIGINT only
while it runs (not SIGHUP or SIGQUIT), stopping and joining the ranks, whose own handlers join
their loaders' workers; its SignalException becomes the project's Interrupted, and the
project's handlers are back when it returns. A failed rank: the agent stops the others, and the
job fails with that rank's error (:func:`root_cause`): its own exception, else the signal that
killed it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import queue
import signal
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from loaderbench import job, keys, tracking
from loaderbench.config import ConfigError
from loaderbench.data import LoaderFailure
from loaderbench.ranks import rank as rank_process
from loaderbench.ranks.merge import RankEpoch, merge, rank_metrics, slowest_rank
from loaderbench.stopping import STOP_SIGNALS, Interrupted
from loaderbench.timing import EpochStats

log = logging.getLogger(__name__)
SIGNALS_ENV = "TORCHELASTIC_SIGNALS_TO_HANDLE"
# How long the agent waits for stopped ranks to join their workers before it kills them.
SHUTDOWN_S = 30
QUIET_LOGGERS = ("torch.distributed.elastic", "torch.multiprocessing")


class RankFailed(RuntimeError):
    """A rank failed; the message names it (its traceback is this error's cause)."""


class RankTraceback(Exception):
    """A rank's own traceback, as text: the cause of the launching process's error."""


class Reports(threading.Thread):
    """Reads the ranks' queue while they run: each epoch recorded as it arrives, the ranks'
    errors kept for :func:`root_cause`."""

    def __init__(self, results: Any, setup: job.Setup, tracker: tracking.Tracker):
        super().__init__(name="loaderbench-ranks", daemon=True)
        self.results, self.setup, self.tracker = results, setup, tracker
        self.epochs: list[EpochStats] = []
        self.reports: list[list[RankEpoch]] = []
        self.errors: list[tuple[int, float, dict[str, Any]]] = []  # (rank, time, failure)
        self.stopped: list[tuple[int, float, str]] = []  # (rank, time, signal name)
        self.crash: BaseException | None = None  # recording failed here (e.g. the store)
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            try:
                item = self.results.get(timeout=0.1)
            except queue.Empty:
                if self._done.is_set():
                    return
                continue
            try:
                self.take(item)
            except Exception as exc:  # raised again in the launching thread
                self.crash = self.crash or exc

    def take(self, item: tuple) -> None:
        kind, *rest = item
        if kind == "epoch":
            reports: list[RankEpoch] = rest[0]
            stats = merge(reports)
            # at most the whole split and its padding: a stream that splits itself by rank
            # says its whole length in every rank
            padded = 0 if math.isnan(stats.padded_samples) else int(stats.padded_samples)
            due = min(sum(r.due for r in reports), len(self.setup.data.train) + padded)
            self.setup.due[stats.epoch] = due
            job.record_epoch(self.setup, self.tracker, stats, due, extra=rank_metrics(reports))
            self.epochs.append(stats)
            self.reports.append(reports)
        elif kind == "error":
            self.errors.append(tuple(rest))
        elif kind == "stopped":
            self.stopped.append(tuple(rest))

    def finish(self) -> None:
        """Everything the ranks sent, read: they have exited, their queues flushed."""
        self._done.set()
        self.join()


def root_cause(reports: Reports, failed: Any) -> Exception:
    """The job's error from a failed launch (``failed``: torch's ChildFailedError): the first
    rank's own exception (not one that only saw a peer go away), else the first rank killed by
    a signal, else the first rank stopped by one, else the first error at all."""
    own = [e for e in reports.errors if not e[2]["peer"]]
    if own or reports.errors:
        rank, _, info = min(own or reports.errors, key=lambda e: e[1])
        if not own:
            killed = _killed(failed)
            if killed:
                return killed
        return _error_of(rank, info)
    if killed := _killed(failed):
        return killed
    if reports.stopped:
        rank, _, name = min(reports.stopped, key=lambda s: s[1])
        return RankFailed(f"rank {rank} was stopped by {name} (the launching process was not)")
    rank, f = failed.get_first_failure()
    return RankFailed(f"rank {rank} (pid {f.pid}) exited with code {f.exitcode}")


def _killed(failed: Any) -> RankFailed | None:
    killed = [(rank, f) for rank, f in failed.failures.items() if f.exitcode < 0]
    if not killed:
        return None
    rank, f = min(killed, key=lambda kv: (kv[1].timestamp, kv[0]))
    return RankFailed(f"rank {rank} (pid {f.pid}) was killed by {f.signal_name()}")


def _error_of(rank: int, info: dict[str, Any]) -> Exception:
    """The rank's exception again, with the rank in its message: a ConfigError or a
    LoaderFailure prints as one line, as it would from a single process."""
    message = f"rank {rank}: {info['message']}"
    if info["kind"] == "ConfigError":
        error: Exception = ConfigError(message)
    elif info["kind"] == "LoaderFailure":
        error = LoaderFailure(message)
    else:
        error = RankFailed(f"rank {rank}: {info['kind']}: {info['message']}")
    error.__cause__ = RankTraceback(f"rank {rank}'s traceback:\n{info['traceback']}")
    return error


@contextlib.contextmanager
def stop_handling_kept() -> Iterator[None]:
    """The agent installs its own handlers for the stop signals in the main thread: put the
    project's back when it returns, and keep it off SIGHUP and SIGQUIT. torch's own log lines
    about a failed rank are quieted: the job's error names the rank, once."""
    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS} if main else {}
    env = os.environ.get(SIGNALS_ENV)
    # each of torch's elastic modules sets its own logger's level: quiet them one by one
    quiet = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith(QUIET_LOGGERS)
    ]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
        for s, handler in before.items():
            signal.signal(s, handler)
        if env is None:
            os.environ.pop(SIGNALS_ENV, None)
        else:
            os.environ[SIGNALS_ENV] = env


def launch_config(ranks: int) -> Any:
    from torch.distributed.launcher.api import LaunchConfig

    return LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=ranks,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        run_id=uuid.uuid4().hex,
        max_restarts=0,
        start_method="spawn",  # a fork after threads (the monitor's) and torch's init is unsafe
        signals_to_handle=",".join(s.name for s in STOP_SIGNALS),
        shutdown_timeout=SHUTDOWN_S,
    )


def run_ranks(cfg: DictConfig, setup: job.Setup, tracker: tracking.Tracker) -> list[EpochStats]:
    """The job as ``trainer.ranks`` ranks; the epochs recorded as they end; the job's merged
    epochs returned."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    plan = setup.ranks
    if plan.warning:
        log.warning("%s", plan.warning)
    config = OmegaConf.to_container(cfg, resolve=True)
    results = multiprocessing.get_context("spawn").Queue()
    reports = Reports(results, setup, tracker)
    outcome: BaseException | None = None
    try:
        with stop_handling_kept():
            reports.start()
            try:
                elastic_launch(launch_config(plan.ranks), rank_process.main)(config, results)
            except (SignalException, ChildFailedError) as exc:
                outcome = exc
            finally:
                reports.finish()
    except SignalException as exc:  # a stop arrived while the agent's handler was still in
        outcome = exc
    finally:
        results.close()
    if isinstance(outcome, SignalException):
        raise Interrupted(int(outcome.sigval)) from None
    if outcome is not None:
        error = root_cause(reports, outcome)
        raise error from error.__cause__  # the rank's traceback, not the agent's
    if reports.crash is not None:
        raise reports.crash
    tracker.log_metrics({keys.SUMMARY_SLOWEST_RANK: slowest_rank(reports.reports)})
    return reports.epochs
