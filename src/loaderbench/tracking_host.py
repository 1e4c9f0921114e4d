"""MLflow in a process of its own, so that the process that forks DataLoader workers never holds it.

Importing MLflow and opening a store adds ~140 MB of mappings to a process (MLflow +48 MB, the
pandas it imports +30, SQLAlchemy and the open store +43). Forking copies the page tables, so each
worker start costs more in a process that holds them: fork, exit and wait took 40.7 ms against
28.1 without them (``scripts/fork_cost.py``). Workers that do not persist are forked every epoch,
inside the clock: a user's Dataset at 2 workers measured 0.960 of a bare loop, and 1.033 of a bare
loop that held MLflow as the job did (docs/results.md).

So a job's tracker (:class:`HostedTracker`: an :class:`~loaderbench.tracking.MlflowTracker` there)
and a sweep's parent run (:class:`~loaderbench.parent_run.ParentRun`) live in the *tracking
process*, ``python -m loaderbench.tracking_host`` (its loop: :mod:`loaderbench.tracking_process`),
started once per process when first needed. :func:`make` builds an object there and returns a :class:`Hosted` handle whose
method calls run there, one at a time, in order, and wait for their answer. Each call carries this
process's working directory and the environment's changes, so the store sees what it would see
here (credentials included: they travel in the environment, never as an argument or in a log).
What the tracking process logs comes back with the next answer and goes to this process's loggers;
its exceptions come back as themselves where this process can unpickle them without MLflow (the
project's own, builtins), else as :class:`HostedError` with the type's name and message.

The tracking process ignores SIGINT and SIGTERM: a stop reaches the whole process group, and the
job must still record its run KILLED through it. It ends when its socket closes: at this
process's exit (:func:`close`, which waits for it), or at its death, when a run left open is
RUNNING until :mod:`loaderbench.lost` ends it, as before. The resource monitor leaves it out of
the job's tree (:data:`loaderbench.resources.OWN_HELPERS`): it is the tool's, not the job's.
Where it cannot start (this process's interpreter may not be run again by its user), the objects
stay in this process (:class:`Local`), with a warning once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from loaderbench import resources
from loaderbench.tracking_process import HostedError, recv, send

__all__ = [
    "HostGone",
    "HostedError",
    "Hosted",
    "HostedTracker",
    "Local",
    "call",
    "close",
    "host",
    "make",
]

log = logging.getLogger(__name__)


class HostGone(RuntimeError):
    """The tracking process ended while this process still needed it."""


class Host:
    """This process's end of the tracking process: requests go out from any thread, one at a
    time; a reader thread takes the answers, so a stop signal that interrupts a wait in the main
    thread leaves the stream whole (the late answer is dropped by its number)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.sock = ours
        cmd = [sys.executable, "-m", "loaderbench.tracking_host", str(theirs.fileno())]
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        resources.OWN_HELPERS.add(self.proc.pid)
        self._answers: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._seq = 0
        self._env: dict[str, str] = {}
        self._reader = threading.Thread(target=self._read, name="loaderbench-tracking", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while (message := recv(self.sock)) is not None:
                seq, (ok, value, records) = message
                try:
                    value = pickle.loads(value)
                except Exception as exc:  # a type this process cannot import: that call fails
                    ok, value = False, HostedError(f"an unreadable answer: {exc}")
                self._answers.put((seq, ok, value, records))
        except OSError:
            pass
        self._answers.put(None)  # the tracking process is gone

    def request(self, kind: str, *payload: Any) -> Any:
        """Send one request and wait for its answer; its logs go to this process's loggers."""
        with self._lock:
            env = dict(os.environ)
            changes = {k: v for k, v in env.items() if self._env.get(k) != v}
            removed = [k for k in self._env if k not in env]
            self._seq += 1
            seq = self._seq
            try:
                # the payload apart: one the other side cannot unpickle fails its call alone
                send(self.sock, seq, (kind, os.getcwd(), changes, removed, pickle.dumps(payload)))
            except OSError as exc:
                raise HostGone(f"the tracking process (pid {self.proc.pid}) is gone") from exc
            self._env = env
            while True:
                answer = self._answers.get()
                if answer is None:
                    self._answers.put(None)
                    code = self.proc.poll()
                    raise HostGone(f"the tracking process (pid {self.proc.pid}) ended ({code})")
                number, ok, value, records = answer
                for record in records:
                    logging.getLogger(record["name"]).handle(logging.makeLogRecord(record))
                if number == seq:
                    break
        if not ok:
            raise value
        return value

    def close(self, timeout_s: float = 30.0) -> None:
        """End the tracking process: it finishes the request at hand, then exits."""
        resources.OWN_HELPERS.discard(self.proc.pid)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Hosted:
    """An object in the tracking process: ``hosted.method(...)`` runs there; :meth:`get`
    reads an attribute."""

    def __init__(self, host: Host, handle: int):
        self._host, self._handle = host, handle

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._host.request("call", self._handle, name, args, kwargs)

    def get(self, name: str) -> Any:
        return self._host.request("get", self._handle, name)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _Elsewhere, ()  # submitit pickles the launcher, the sweep's callback with it


class _Elsewhere:
    """A :class:`Hosted` handle unpickled in another process, where it points at nothing."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise HostGone(f"{name}: a handle to another process's tracking process")


class Local:
    """An object kept in this process, with :class:`Hosted`'s interface: where the tracking
    process cannot start."""

    def __init__(self, obj: Any):
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name)

    def get(self, name: str) -> Any:
        return getattr(self._obj, name)


_host: Host | None = None
_unavailable: str | None = None  # why the tracking process could not start, once it could not
_host_lock = threading.Lock()


def host() -> Host | None:
    """This process's tracking process, started on first use; None where it cannot start (an
    interpreter this user may not run again: a setuid job whose Python lies under another user's
    home), said once, and then the caller's objects stay in this process."""
    global _host, _unavailable
    with _host_lock:
        if _unavailable is None and (_host is None or _host.proc.poll() is not None):
            try:
                _host = Host()
            except OSError as exc:
                _unavailable = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "the tracking process could not start (%s): MLflow is recorded from this "
                    "process, whose workers' forks then cost more (docs/results.md)",
                    _unavailable,
                )
                return None
            atexit.register(close)
        return _host


def _forget_in_child() -> None:
    """In a forked child (a DataLoader worker): not its tracking process. Its copy of the socket
    closes, so the tracking process still sees the end when this process ends."""
    global _host
    if _host is not None:
        with contextlib.suppress(OSError):
            _host.sock.close()
        _host = None


os.register_at_fork(after_in_child=_forget_in_child)


def make(factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Hosted | Local:
    """``factory(*args, **kwargs)`` built in the tracking process (a class or function of a
    module, passed by its name), and its handle."""
    h = host()
    if h is None:
        return Local(factory(*args, **kwargs))
    return Hosted(h, h.request("make", factory, args, kwargs))


def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` run in the tracking process; its answer."""
    h = host()
    return function(*args, **kwargs) if h is None else h.request("function", function, args, kwargs)


def close() -> None:
    """End this process's tracking process, if it runs (at exit; a test may call it)."""
    global _host
    with _host_lock:
        h, _host = _host, None
    if h is not None:
        h.close()


class HostedTracker:
    """A job's :class:`~loaderbench.tracking.Tracker`: an
    :class:`~loaderbench.tracking.MlflowTracker` (the same arguments) in the tracking process,
    each call run there and its answer awaited."""

    def __init__(self, *args: Any, **kwargs: Any):
        from loaderbench.tracking import MlflowTracker

        self._remote = make(MlflowTracker, *args, **kwargs)
        self.run_id: str | None = None

    def start(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self._remote.start(run_name=run_name, params=dict(params), tags=dict(tags))
        self.run_id = self._remote.get("run_id")

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._remote.log_metrics(dict(metrics), step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._remote.log_params(dict(params))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._remote.log_text(text, artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._remote.set_tags(dict(tags))

    def end(self, status: str = "FINISHED") -> None:
        self._remote.end(status)

    def where(self) -> str:
        return self._remote.where()


if __name__ == "__main__":  # the loop, in a module imported as itself (its errors unpickle here)
    from loaderbench.tracking_process import serve

    serve(int(sys.argv[1]))
