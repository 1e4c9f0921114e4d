"""What this process is running, for whoever must act on it: the sweep it launched, and the run
a stop signal ended.

:class:`~loaderbench.sweep.SweepCallback` registers its open sweep in :data:`ACTIVE` and leaves
when it closes; a job says here which run it marked KILLED. :mod:`loaderbench.cli` reads both
when a stop signal ends the command, and the tuner's sweeper logs its own figures on the
sweep's parent through it. This module imports nothing of the package, so every side can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class Interruption:
    """What a stop signal ended: a sweep's parent, and how many of its jobs had finished."""

    subject: str  # "sweep <parent id>"
    finished: int
    total: int | str


class Sweep(Protocol):
    def interrupt(self, signal_name: str) -> Interruption:
        """The report of what finished, then the parent KILLED with the signal's name."""

    def log_on_parent(self, metrics: dict[str, float]) -> None:
        """Metrics on the sweep's parent run."""


class Active:
    """The sweep open in this process (launched here) and the run the last stop ended."""

    def __init__(self) -> None:
        self.sweep: Sweep | None = None
        self.stopped_run: str | None = None  # the run a stop signal marked KILLED here

    def register(self, sweep: Sweep) -> None:
        self.sweep = sweep

    def unregister(self, sweep: Sweep) -> None:
        if self.sweep is sweep:
            self.sweep = None

    def launching_here(self) -> bool:
        """Whether this process launched the running sweep (its callback is open here)."""
        return self.sweep is not None

    def interrupt(self, signal_name: str) -> Interruption | None:
        """Close the running sweep after a stop signal; None when no sweep is open here."""
        return self.sweep.interrupt(signal_name) if self.sweep is not None else None

    def log_on_parent(self, metrics: dict[str, float]) -> None:
        """Metrics on the running sweep's parent run (a sweeper's own figures); nothing when
        no sweep is open here."""
        if self.sweep is not None:
            self.sweep.log_on_parent(metrics)

    def take_stopped_run(self) -> str | None:
        """The run a stop marked KILLED in this process, once (a launched job's process may go
        on to the next job)."""
        run, self.stopped_run = self.stopped_run, None
        return run


ACTIVE = Active()
