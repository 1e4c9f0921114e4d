"""The tuner's cost cap: what the grid over the searched space would cost, estimated from the
search's own trials, and whether one more probe keeps the search within ``tune.cost_share`` of it.

A mixin of :class:`loaderbench.tune.Search`, whose trials (``done``), space, epochs, measured
worker start (``startup_s``) and confirming runs it reads.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    from loaderbench.tune_space import Candidate


class GridCost:
    """The cost arithmetic of :class:`~loaderbench.tune.Search`."""

    def grid_s(self) -> float:
        """What the grid over the space would cost, estimated: for each of its settings the
        first full run's wall time, × the first run's throughput over the fastest seen (a
        faster setting's full run is over sooner, so this errs low), and its workers' starts
        (:meth:`start_s`). NaN before a full run."""
        full = [t for t in self.done if not t.probe and t.ok]
        if not full:
            return math.nan
        first, fastest = full[0], max(t.value for t in self.done if t.ok)
        run = first.wall_s * min(1.0, first.value / fastest)
        return sum(run + self.start_s(c) for c in self.space.grid())

    def start_s(self, c: Candidate) -> float:
        """What starting ``c``'s worker processes adds to a full run, estimated (0 where it is
        not measured): a spawn or forkserver worker starts a fresh interpreter that imports
        what the job's workers import (:attr:`startup_s`), as many at a time as there are
        cores, in the training and the validation loader, once if they persist, else every
        epoch. A forked worker starts in milliseconds. On 1,600 JPEGs and 2 cores four spawn
        workers took 7 s a start (a fresh interpreter's imports 3.6 s), and the grid's spawn
        and forkserver runs 2–3.4× a forked one's; counted as the first run's, the grid came
        to 636 s against the 1,169 s it took."""
        if not c.workers or c.threads or c.context == "fork" or math.isnan(self.startup_s):
            return 0.0
        starts = 2 * (1 if c.persistent else self.epochs)  # the training and validation loaders
        return starts * self.startup_s * math.ceil(c.workers / max(self.space.cores, 1))

    def within_cost(self) -> bool:
        """Whether one more probe keeps the search within ``cost_share`` of the grid's cost,
        with the confirming runs still to come reserved, and a settle's (:meth:`to_settle`):
        at most every full run once more, the first and each confirming one. Each at the first
        full run's cost. (Reserving two for the settle, the search on 1,600 JPEGs ran three
        and came to 0.158 of the grid.)"""
        grid = self.grid_s()
        if self.cost_share is None or math.isnan(grid):
            return True
        probes = [t.wall_s for t in self.done if t.probe] or [0.0]
        first = next(t for t in self.done if not t.probe and t.ok)
        ran, confirm = {t.candidate for t in self.done if not t.probe}, set(self.to_confirm())
        reserve = (len(confirm - ran) + len(confirm | ran)) * first.wall_s
        spent = max(self.elapsed_s, sum(t.wall_s for t in self.done))  # the start-up's timing too
        return spent + max(probes) + reserve <= self.cost_share * grid
