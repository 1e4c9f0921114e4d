"""The tuner's cost cap: what the grid over the searched space would cost, estimated from the
search's own trials, and whether one more probe keeps the search within ``tune.cost_share`` of it.

A mixin of :class:`loaderbench.tune.Search`, whose trials (``done``), space, epochs, measured
worker start (``startup_s``) and confirming runs it reads.
"""

from __future__ import annotations

import math
from dataclasses import replace
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
        what the job's workers import, as many at a time as there are cores (:meth:`starts`),
        each start at :meth:`start_each_s`. A forked worker starts in milliseconds. On 1,600
        JPEGs and 2 cores four spawn workers took 7 s a start (a fresh interpreter's imports
        3.6 s), and the grid's spawn and forkserver runs 2–3.4× a forked one's; counted as the
        first run's, the grid came to 636 s against the 1,169 s it took."""
        each = self.start_each_s() if self.starts(c) else math.nan
        return 0.0 if math.isnan(each) else self.starts(c) * each

    def starts(self, c: Candidate) -> int:
        """How many fresh-interpreter starts ``c``'s runs wait for, one after another: in the
        training and the validation loader, once if they persist, else every epoch, each of
        ``ceil(workers / cores)`` rounds. 0 for no workers, threads or forked workers."""
        if not c.workers or c.threads or c.context == "fork":
            return 0
        per_loader = 1 if c.persistent else self.epochs
        return 2 * per_loader * math.ceil(c.workers / max(self.space.cores, 1))

    def start_each_s(self) -> float:
        """One worker start: the least of the fresh interpreter's imports, timed once before
        the trials (:attr:`startup_s`), and what the trials showed, where a spawn or forkserver
        trial has a forked twin (the same setting, probe or full run): the difference of their
        wall times per start. The one timing can run long on a busy machine: on 2,048 JPEGs it
        once took 7.7 s, where the imports take 4–5 s and the search's own spawn and
        forkserver probes showed 5.9 and 5.3 s a start; the grid came out at 1,708 s, where a
        grid of the same space took 1,345 s. Both err low, as the cap needs."""
        trials = {(t.candidate, t.probe): t for t in self.done if t.ok}
        shown = [
            (t.wall_s - twin.wall_s) / self.starts(c)
            for (c, probe), t in trials.items()
            if self.starts(c)
            and (twin := trials.get((replace(c, context="fork"), probe))) is not None
            and t.wall_s > twin.wall_s
        ]
        return min((v for v in (self.startup_s, *shown) if not math.isnan(v)), default=math.nan)

    def within_cost(self) -> bool:
        """Whether one more probe keeps the search within ``cost_share`` of the grid's cost,
        with the confirming runs still to come reserved, and a settle's (:meth:`to_settle`):
        at most every full run once more, the first and each confirming one. Each at the first
        full run's cost. (Reserving two for the settle, the search on 1,600 JPEGs ran three
        and came to 0.158 of the grid.) What follows the search, the report and the
        interpreter's exit, is reserved at the cost of the command's start before it
        (:attr:`lead_s`): on the in-memory tensors the search's own figure said 92.8 s and the
        command took 95.6 s."""
        grid = self.grid_s()
        if self.cost_share is None or math.isnan(grid):
            return True
        probes = [t.wall_s for t in self.done if t.probe] or [0.0]
        first = next(t for t in self.done if not t.probe and t.ok)
        ran, confirm = {t.candidate for t in self.done if not t.probe}, set(self.to_confirm())
        reserve = (len(confirm - ran) + len(confirm | ran)) * first.wall_s
        spent = max(self.elapsed_s, sum(t.wall_s for t in self.done))  # the start-up's timing too
        return spent + max(probes) + reserve + self.lead_s <= self.cost_share * grid
