"""The tracking process's side of :mod:`loaderbench.tracking_host`: its loop (:func:`serve`,
run by ``python -m loaderbench.tracking_host FD``), and the messages both sides send.

A message is its number and its length (``_HEADER``), then its pickle; a request's payload and an
answer's value are pickled apart inside it, so one that the other side cannot read fails that call
alone. Requests carry the caller's working directory and its environment's changes; answers carry
what the tracking process logged meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import threading
from typing import Any

_OWN = ("builtins", "loaderbench", "hydra", "omegaconf")  # exceptions that unpickle there as such
_HEADER = struct.Struct("!QQ")  # the request's number, the message's length


class HostedError(RuntimeError):
    """An exception in the tracking process whose type the job's process could not unpickle
    without MLflow."""


def send(sock: socket.socket, seq: int, message: Any) -> None:
    """``message`` (pickled) as the answer to, or the request of, number ``seq``."""
    data = pickle.dumps(message)
    sock.sendall(_HEADER.pack(seq, len(data)) + data)  # one call: a stop signal cannot split it


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def recv(sock: socket.socket) -> tuple[int, Any] | None:
    """The next message's number and the message, or None at the end of the stream."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    seq, size = _HEADER.unpack(header)
    data = _recv_exact(sock, size)
    return None if data is None else (seq, pickle.loads(data))


class _Collect(logging.Handler):
    """Keeps what the tracking process logs, for the next answer."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, Any]] = []
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        fields = dict(vars(record), msg=record.getMessage(), args=None, exc_info=None)
        if record.exc_info:
            fields["msg"] += "\n" + logging.Formatter().formatException(record.exc_info)
        with self.lock_:
            self.records.append(fields)

    def take(self) -> list[dict[str, Any]]:
        with self.lock_:
            out, self.records = self.records, []
        return out


def _portable(exc: BaseException) -> BaseException:
    """``exc`` where the other side can unpickle it without MLflow, else a HostedError."""
    kind = type(exc)
    if kind.__module__.split(".")[0] in _OWN:
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:
            pass
    return HostedError(f"{kind.__module__}.{kind.__qualname__}: {exc}")


def _import_mlflow() -> None:
    with contextlib.suppress(Exception):  # the request that needs it says why
        import mlflow.tracking  # noqa: F401


def serve(fd: int) -> None:
    """The tracking process's loop: one request at a time, until the socket closes."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    sys.stdout = sys.stderr  # a print must never reach the other side as an answer
    collect = _Collect()
    root = logging.getLogger()
    root.handlers[:] = [collect]
    root.setLevel(logging.INFO)
    sock = socket.socket(fileno=fd)
    # MLflow's import (~3 s) while the job builds its dataset: the first request waits less
    threading.Thread(target=_import_mlflow, name="loaderbench-import", daemon=True).start()
    objects: dict[int, Any] = {}
    while (request := recv(sock)) is not None:
        seq, (kind, cwd, changes, removed, payload) = request
        os.environ.update(changes)
        for key in removed:
            os.environ.pop(key, None)
        ok, value = True, None
        try:
            os.chdir(cwd)
            payload = pickle.loads(payload)
            if kind == "make":
                factory, args, kwargs = payload
                objects[seq] = factory(*args, **kwargs)
                value = seq
            elif kind == "call":
                handle, name, args, kwargs = payload
                value = getattr(objects[handle], name)(*args, **kwargs)
            elif kind == "get":
                handle, name = payload
                value = getattr(objects[handle], name)
            else:  # "function"
                function, args, kwargs = payload
                value = function(*args, **kwargs)
            value = pickle.dumps(value)  # apart: the other side reads it apart
        except Exception as exc:
            ok, value = False, pickle.dumps(_portable(exc))
        try:
            send(sock, seq, (ok, value, collect.take()))
        except OSError:
            return
