"""Stop signals: SIGTERM (``kill``, Slurm's preemption and ``scancel``) and SIGINT (Ctrl-C).

Both are raised in the main thread as :class:`Interrupted`, a KeyboardInterrupt, so every
clean-up on the way out runs for SIGTERM too. The job records its run KILLED under
:func:`signals_held`; a DataLoader error that is really a stop reaching the workers is told apart
by :func:`stopped_with_workers`. :mod:`loaderbench.cli` installs the handlers and ends the
command; the job (:mod:`loaderbench.experiment`) only reads this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised in the main thread wherever it was; KeyboardInterrupt's subclass,
    so every ``except KeyboardInterrupt`` clean-up runs for SIGTERM too."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.name = signum, signal.Signals(signum).name


def signal_name(stop: BaseException) -> str:
    """The stop's signal name: ``SIGTERM`` for an :class:`Interrupted`, else ``SIGINT`` (a plain
    KeyboardInterrupt is Python's own Ctrl-C)."""
    return getattr(stop, "name", "SIGINT")


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _resend_lost_stop(unraisable: Any) -> None:
    """``sys.unraisablehook``: a stop raised where Python cannot raise (a finalizer, an at-fork
    callback: logging's runs at every fork of a DataLoader worker) would be printed and lost, and
    the job would run on to FINISHED. Send the signal again, from a thread a moment later, so the
    main thread gets it once out of there; anything else goes to the hook as before."""
    stop = unraisable.exc_value
    if isinstance(stop, Interrupted):
        again = threading.Timer(0.01, os.kill, (os.getpid(), stop.signum))
        again.daemon = True
        again.start()
        return
    _PREVIOUS_HOOK[0](unraisable)


_PREVIOUS_HOOK = [sys.unraisablehook]


def install_signal_handlers() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_interrupted)
    if sys.unraisablehook is not _resend_lost_stop:
        _PREVIOUS_HOOK[0] = sys.unraisablehook
        sys.unraisablehook = _resend_lost_stop


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
