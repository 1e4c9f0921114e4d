"""Runs left RUNNING by a process that died without a word, found and ended KILLED.

A run is lost when its process is gone, or its heartbeat (:mod:`loaderbench.heartbeat`) is
older than a limit. What can be seen depends on where one looks from:

- on the run's own host (and pid namespace), its pid says it at once: the process is gone, or
  the pid now belongs to a process that started later (a reused pid);
- anywhere else, only the heartbeat can: a run whose last beat is older than the limit
  (default 10 minutes) is lost. A process that hangs keeps beating, so it is not lost.

A lost run ends KILLED with ``loaderbench.killed_by=lost`` and the reason in
``loaderbench.lost_reason``; a sweep's parent ends so once no run of it is still live (a
Slurm sweep's jobs may outlive the process that launched them). :func:`end_lost_here` runs at
the start of every run and sweep (this host's runs only, by pid); ``python -m
loaderbench.doctor`` looks at every run of a store, by pid where it can and by heartbeat
elsewhere.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from loaderbench import keys, store
from loaderbench.heartbeat import parse_stamp, pid_namespace

log = logging.getLogger(__name__)
HEARTBEAT_LIMIT_S = 600.0
UNFINISHED = "its job ended without ending its run"
START_SLACK_S = 1.0  # psutil's start times of one process agree to 10 ms; a reused pid's differ


@dataclass
class Machine:
    """Where a check runs: a pid is only meaningful on its own host and pid namespace."""

    host: str
    pid_ns: str | None

    @classmethod
    def here(cls) -> Machine:
        return cls(socket.gethostname(), pid_namespace())

    def holds(self, tags: Mapping[str, str]) -> bool:
        if tags.get(keys.HOST_TAG) != self.host:
            return False
        theirs = tags.get(keys.PID_NS_TAG)
        return theirs is None or self.pid_ns is None or theirs == self.pid_ns


@dataclass
class Lost:
    """A run found lost, and why."""

    run: Any
    reason: str

    @property
    def label(self) -> str:
        info = self.run.info
        kind = "sweep" if store.is_sweep(self.run) else "run"
        return f"{kind} {info.run_id} ({info.run_name or 'unnamed'})"


# --- the rules (pure but for the process table) ---------------------------------------------
def process_state(pid: int, started: float | None) -> str | None:
    """None while process ``pid`` (started at ``started``, when known) runs; else ``gone`` or
    ``reused`` (a process of that pid started later). A zombie is gone: it only waits to be
    reaped."""
    try:
        process = psutil.Process(pid)
        created, status = process.create_time(), process.status()
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.AccessDenied:  # someone else's process: it exists
        return None
    if status == psutil.STATUS_ZOMBIE:
        return "gone"
    if started is not None and abs(created - started) > START_SLACK_S:
        return "reused"
    return None


def heartbeat_age(tags: Mapping[str, str], now: float) -> float | None:
    """Seconds since the run's last heartbeat; None when it never recorded one (an older
    loaderbench, or another tool's run: not ours to judge)."""
    beat = parse_stamp(tags.get(keys.HEARTBEAT_TAG, ""))
    return None if beat is None else max(0.0, now - beat)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def why_lost(
    tags: Mapping[str, str],
    *,
    now: float,
    here: Machine | None,
    heartbeat_limit_s: float | None,
) -> str | None:
    """Why a RUNNING run with these tags is lost, or None while it may be live. ``here``: the
    machine looking (its pids can be checked); ``heartbeat_limit_s`` None: no heartbeat rule."""
    pid = _number(tags.get(keys.PID_TAG))
    host = tags.get(keys.HOST_TAG, "?")
    if here is not None and pid is not None and here.holds(tags):
        state = process_state(int(pid), _number(tags.get(keys.PID_STARTED_TAG)))
        if state == "gone":
            return f"process {int(pid)} on {host} is gone"
        if state == "reused":
            return f"process {int(pid)} on {host} is gone (its pid is another process's now)"
        return None  # alive: a slow beat says nothing more
    if heartbeat_limit_s is None:
        return None
    age = heartbeat_age(tags, now)
    if age is None or age <= heartbeat_limit_s:
        return None
    return f"no heartbeat for {age / 60:.0f} min (limit {heartbeat_limit_s / 60:g} min)"


def judge(
    running: Iterable[Any],
    *,
    now: float,
    here: Machine | None,
    heartbeat_limit_s: float | None,
    children: Callable[[Any], list[Any]] | None = None,
) -> list[Lost]:
    """The lost ones among RUNNING runs: jobs first, then each parent whose own process is lost
    and none of whose RUNNING runs is live. ``children(parent)``: its RUNNING runs, wherever
    they run (default: those among ``running``)."""
    runs = list(running)
    rules = {"now": now, "here": here, "heartbeat_limit_s": heartbeat_limit_s}
    lost = [
        Lost(r, why)
        for r in runs
        if not store.is_sweep(r)
        if (why := why_lost(r.data.tags, **rules))
    ]
    gone = {x.run.info.run_id for x in lost}
    for parent in (r for r in runs if store.is_sweep(r)):
        if (reason := why_lost(parent.data.tags, **rules)) is None:
            continue
        if children is None:
            kids = [r for r in runs if r.data.tags.get(keys.PARENT_TAG) == parent.info.run_id]
        else:
            kids = children(parent)
        live = [
            k for k in kids if k.info.run_id not in gone and why_lost(k.data.tags, **rules) is None
        ]
        if not live:
            lost.append(Lost(parent, f"{reason}, and none of its runs is live"))
    return lost


# --- the store ------------------------------------------------------------------------------
def running_runs(client: Any, *, host: str | None = None) -> list[Any]:
    """Every RUNNING run of the store's active experiments, all pages (``host``: only those
    that recorded this host)."""
    from mlflow.entities import ViewType

    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    query = "attributes.status = 'RUNNING'"
    if host is not None:
        query += f" and tags.`{keys.HOST_TAG}` = '{host}'"
    runs, token = [], None
    while True:
        page = client.search_runs(ids, query, ViewType.ACTIVE_ONLY, store.PAGE, page_token=token)
        runs += list(page)
        if not (token := page.token):
            return runs


def mark(client: Any, lost: Lost) -> None:
    """End the run KILLED, tagged lost with its reason; its end time is its last heartbeat."""
    tags = lost.run.data.tags
    beat = parse_stamp(tags.get(keys.HEARTBEAT_TAG, ""))
    end_ms = int((beat if beat is not None else time.time()) * 1000)
    run_id = lost.run.info.run_id
    store.log_batch(
        client,
        run_id,
        tags={keys.KILLED_BY_TAG: keys.KILLED_BY_LOST, keys.LOST_REASON_TAG: lost.reason},
    )
    client.set_terminated(run_id, "KILLED", end_time=max(end_ms, lost.run.info.start_time or 0))


def running_children(client: Any, parent: Any) -> list[Any]:
    """The parent's RUNNING runs, on any host."""
    return [r for r in store.child_runs(client, parent) if r.info.status == "RUNNING"]


def end_lost_here(client: Any) -> list[Lost]:
    """At the start of a run or a sweep: end this host's runs whose process is gone (a parent
    once none of its runs, on any host, is live). Cheap: one query of this host's RUNNING runs;
    never fatal: a failure is a warning."""
    try:
        here = Machine.here()
        found = judge(
            running_runs(client, host=here.host),
            now=time.time(),
            here=here,
            heartbeat_limit_s=None,
            children=lambda parent: running_children(client, parent),
        )
        for lost in found:
            mark(client, lost)
    except Exception as exc:  # a courtesy to earlier runs: this run must not fail for it
        log.warning("could not look for lost runs: %s", exc)
        return []
    if found:
        log.warning(
            "%d run(s) left RUNNING by a dead process ended KILLED (%s=%s): %s",
            len(found),
            keys.KILLED_BY_TAG,
            keys.KILLED_BY_LOST,
            "; ".join(f"{x.label}: {x.reason}" for x in found),
        )
    return found


def end_unfinished(client: Any, parent_run_id: str) -> list[Lost]:
    """At a sweep's end, when every job has returned: a run of it still RUNNING lost its
    process without a word (SIGKILL, out of memory, a dead node) and ends KILLED as lost, so the
    report says so. Never fatal: a failure is a warning."""
    try:
        parent = client.get_run(parent_run_id)
        found = [Lost(r, UNFINISHED) for r in running_children(client, parent)]
        for lost in found:
            mark(client, lost)
    except Exception as exc:
        log.warning("could not look for the sweep's unfinished runs: %s", exc)
        return []
    if found:
        log.warning("%d run(s) of the sweep never ended: KILLED as lost", len(found))
    return found
