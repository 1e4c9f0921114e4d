"""The signs of life a run leaves in the store: which process runs it, and that it still does.

MLflow has no heartbeat of its own: a process killed without a word (SIGKILL, the OOM killer, a
node that dies, Slurm past its grace period) leaves its run RUNNING forever. So every run (a
job's, a sweep's parent) records its host, pid, the process's start time and pid namespace
(:func:`process_tags`), and a :class:`Heartbeat` thread refreshes ``loaderbench.heartbeat``
every minute while the process lives. :mod:`loaderbench.lost` reads both back.
"""

from __future__ import annotations

import calendar
import logging
import os
import socket
import threading
import time
from functools import cache
from typing import Any

import psutil

from loaderbench import keys

log = logging.getLogger(__name__)
INTERVAL_S = 60.0  # one tag write a minute: ~5 ms on SQLite, one request on a server
STAMP = "%Y-%m-%dT%H:%M:%SZ"


def stamp(t: float | None = None) -> str:
    """``t`` (default: now) as the heartbeat tag writes it: UTC, to the second."""
    return time.strftime(STAMP, time.gmtime(time.time() if t is None else t))


def parse_stamp(text: str) -> float | None:
    """Seconds since the epoch of a heartbeat tag, or None when it is not one."""
    try:
        return float(calendar.timegm(time.strptime(text, STAMP)))
    except (TypeError, ValueError):
        return None


@cache
def pid_namespace() -> str | None:
    """The pid namespace of this process (Linux; e.g. ``pid:[4026531836]``): two containers
    may share a hostname, never a pid namespace, and a pid means nothing outside its own."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_started(pid: int) -> float:
    """When process ``pid`` started (s since the epoch, to 10 ms): with the pid, it names one
    process even after the pid is reused."""
    return psutil.Process(pid).create_time()


def process_tags() -> dict[str, str]:
    """Host, pid, start time and pid namespace of this process, as tags."""
    pid = os.getpid()
    tags = {
        keys.HOST_TAG: socket.gethostname(),
        keys.PID_TAG: str(pid),
        keys.PID_STARTED_TAG: f"{process_started(pid):.2f}",
        keys.HEARTBEAT_TAG: stamp(),
    }
    if ns := pid_namespace():
        tags[keys.PID_NS_TAG] = ns
    return tags


class Heartbeat:
    """Refreshes a run's ``loaderbench.heartbeat`` every ``interval_s`` from a daemon thread,
    off the training loop's clock; a failed write (a server away) waits for the next beat."""

    def __init__(self, client: Any, run_id: str, interval_s: float = INTERVAL_S):
        self.client, self.run_id, self.interval_s = client, run_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name="loaderbench-heartbeat", daemon=True
        )

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.client.set_tag(self.run_id, keys.HEARTBEAT_TAG, stamp())
            except Exception as exc:  # never raise into the run: the next beat tries again
                log.debug("heartbeat of run %s not written: %s", self.run_id, exc)

    def __getstate__(self) -> dict[str, Any]:
        # submitit pickles the sweep callback, its heartbeat too, into every job: a copy there
        # does not beat (the job's own run has its own heartbeat)
        return {"client": self.client, "run_id": self.run_id, "interval_s": self.interval_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)
        self._stop.set()

    def stop(self) -> None:
        """No more beats. Not joined: a beat waiting on a server away must not hold the run's
        end (a late one lands on an ended run, which is harmless)."""
        self._stop.set()
