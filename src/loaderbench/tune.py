"""``sweep=tune``: find the fastest loader settings for at most 0.15 of a grid's cost.

The knobs that leave training unchanged are nearly separable, and the search uses that:

1. **workers**: every ``num_workers`` from 0 to ``tune.max_workers`` (2 × the cores, ÷ the ranks
   with ``trainer.ranks=N``: workers per rank, as each rank builds its loader), with the
   cheapest start-up (fork where the platform has it, persistent workers when there is more
   than one epoch). The worker count sets the steady rate: how the loader's processes and the
   training step share the cores.
2. **prefetch**: the other ``tune.prefetch_factors`` for the fastest so far (the queue depth).
3. **start-up**: for the fastest setting with workers, every other context (and, on an
   accelerator, pinning) with its persistence, then the other persistence with its context. A
   context's start-up cost does not depend on persistence, which only decides how often it is
   paid. Last, since the workers stage already starts them the cheapest way, and its probes
   cost the most (a spawn or forkserver start): where the cost cap stops the search, it stops
   here first (on 1,600 JPEGs the cap used to end the search before prefetching, which there
   was worth 15%).

With ``tune.torch_threads=true`` a **threads** stage comes after the workers: every thread count
of the step (1, 2, 4, .. the cores) for the fastest setting, and with as many workers as the
cores that count leaves (fewer threads give the workers cores of their own).

In ``bench.mode=emulated`` the question is another: the fewest workers that keep the step fed
(:mod:`loaderbench.feeding`). The workers stage then counts up and stops at the first probe
that is fed; the full runs confirm it and the count below it, which starved (or, when none
was fed, the fastest probe); the report's fed verdict decides among them.

With ``tune.backends`` the workers stage also probes loader threads at each worker count (in
an order that covers the range early: 4, 2, 1, 3 for 0–4); prefetch follows the fastest of
either backend. The first trial is a full run of ``num_workers=0``: the reference, and what a
full run costs. Each later trial is a *probe*: the user's job with ``bench.probe_batches``
batches an epoch (at most ``tune.probe_share`` of it, ended by its sampler and spanning the
loader's start-up burst and tail: :func:`loaderbench.probe.probe_plan`), ranked by its
throughput projected to full epochs (:func:`loaderbench.timing.projected_samples_per_s`).
Full runs *confirm*: the best, the runner-up within ``tune.confirm_within``, the best of the
other side of ``num_workers=0`` and of the other backend; the report's noise rule decides among
full runs only. Where that rule would tie the fastest full run with simpler ones, each of them
runs once more (:meth:`Search.to_settle`): a repeat of each is what can tell them apart.
``tune.trials``, ``tune.budget_s`` and ``tune.cost_share`` (of the grid's estimated cost:
:mod:`loaderbench.tune_cost`) stop the probing early; the confirming runs always run.

This module is the search itself, pure over the config and the trials' figures; the sweeper in
``hydra_plugins.loaderbench_tune`` runs its trials through Hydra's launcher.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

from loaderbench.config import TuneConfig
from loaderbench.tune_cost import GridCost
from loaderbench.tune_space import (
    BACKEND,
    BATCH,
    CHEAPEST_START,
    CONTEXT,
    PERSISTENT,
    PIN,
    PINNABLE,
    PREFETCH,
    THREADS,
    WORKERS,
    Candidate,
    Space,
    accelerator,
    build_space,
    search_threads,
    spread,
    tuned_keys,
)

# the space's names, as before the space had a module of its own
__all__ = [
    "BACKEND", "BATCH", "CHEAPEST_START", "CONTEXT", "PERSISTENT", "PIN", "PINNABLE",
    "PREFETCH", "RESERVE", "THREADS", "WORKERS", "Candidate", "Search", "Space", "Trial",
    "accelerator", "build_space", "search_threads", "spread", "tuned_keys",
]  # fmt: skip
log = logging.getLogger(__name__)
RESERVE = TuneConfig.CONFIRMING  # trials kept for the confirming runs


@dataclass
class Trial:
    candidate: Candidate
    probe: bool
    value: float = math.nan  # projected samples/s of a probe, summary samples/s of a full run
    fed: bool | None = None  # an emulated step's verdict (None in the other modes)
    wall_s: float = 0.0  # what it cost, launch included
    low: float = math.nan  # a full run's 95% interval of ``value``, as the report reads it
    high: float = math.nan

    @property
    def ok(self) -> bool:
        return not math.isnan(self.value)


@dataclass
class Search(GridCost):
    """The staged search's state: the trials so far and what the budget has left."""

    space: Space
    probe_batches: int
    trials: int | None = None
    budget_s: float | None = None
    confirm_within: float = 0.1
    goal: str = "fastest"  # or "fed": the fewest workers that keep an emulated step fed
    cost_share: float | None = None
    epochs: int = 1  # the job's epochs: how often workers that do not persist start
    # a spawn or forkserver worker's start, measured (``hydra_plugins.loaderbench_tune``)
    startup_s: float = math.nan
    done: list[Trial] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    # the command's own start before the search (Python, Hydra, torch): what follows the
    # search (the report, the interpreter's exit) is reserved at the same cost
    lead_s: float = 0.0
    skipped: int = 0  # candidates the cost cap left unprobed

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def probes_left(self, reserve: int) -> int | None:
        """How many more probes the budget allows, keeping ``reserve`` trials for confirming;
        None for no limit."""
        if self.budget_s is not None and self.elapsed_s >= self.budget_s:
            return 0
        if not self.within_cost():
            return 0
        if self.trials is None:
            return None
        return max(self.trials - len(self.done) - reserve, 0)

    def fresh(self, cands: list[Candidate]) -> list[Candidate]:
        tried = {t.candidate for t in self.done}
        return [c for c in dict.fromkeys(cands) if c not in tried]

    def ranked(self) -> list[Trial]:
        """The trials to rank, fastest first: every one that ran (a probe's projection, a full
        run's figure); the emulated search ranks its probes."""
        ok = [t for t in self.done if t.ok and (t.probe or self.goal != "fed")]
        return sorted(ok, key=lambda t: -t.value)

    def best(self, *, workers: bool | None = None, threads: bool | None = None) -> Trial | None:
        """The fastest ranked trial, with workers or without, of loader threads or not."""
        ranked = self.ranked()
        if workers is not None:
            ranked = [t for t in ranked if (t.candidate.workers > 0) == workers]
        if threads is not None:
            ranked = [t for t in ranked if t.candidate.threads == threads]
        return ranked[0] if ranked else None

    def stages(self) -> list[tuple[str, Any]]:
        """(name, function of the search so far -> that stage's candidates), in order."""
        sp = self.space

        def workers(s: Search) -> list[Candidate]:
            if s.goal == "fed":  # counted up: the first fed count is the answer
                return [sp.baseline(w, bs) for bs in sp.batch_sizes for w in sp.workers]
            every = (
                sp.baseline(w, bs, backend)
                for bs in sp.batch_sizes
                for w in spread(sp.workers)
                for backend in sp.backends
            )
            return list(dict.fromkeys(every))  # num_workers=0 once: there are no threads

        def startup(s: Search) -> list[Candidate]:
            best = s.best(workers=True, threads=False)
            if best is None:
                return []
            c = best.candidate
            # Every context with the persistence probed so far, then the other persistence
            # with this context: a context's start-up cost does not depend on persistence,
            # which only decides how often it is paid.
            return [
                *(replace(c, context=ctx, pin=pin) for ctx in sp.contexts for pin in sp.pin),
                *(replace(c, persistent=p) for p in sp.persistent),
            ]

        def prefetch(s: Search) -> list[Candidate]:
            best = s.best(workers=True)
            return [replace(best.candidate, prefetch=pf) for pf in sp.prefetch] if best else []

        def threads(s: Search) -> list[Candidate]:
            best = s.fewest_fed() if s.goal == "fed" else None
            if (best := best or s.best()) is None:
                return []
            c = best.candidate
            fill = [  # as many workers as the cores a thread count leaves
                replace(sp.baseline(sp.cores - t, c.batch_size), torch_threads=t)
                for t in sp.torch_threads
                if t is not None and sp.cores - t in sp.workers
            ]
            return [*(replace(c, torch_threads=t) for t in sp.torch_threads), *fill]

        tuned = [("threads", threads)] if len(sp.torch_threads) > 1 else []
        if self.goal == "fed":
            return [("workers", workers), *tuned]
        return [("workers", workers), *tuned, ("prefetch", prefetch), ("start-up", startup)]

    def enough(self, stage: str) -> bool:
        """Whether ``stage`` may stop before its last candidate: counting workers up for an
        emulated step, the first fed probe is the answer."""
        last = self.done[-1] if self.done else None
        return self.goal == "fed" and stage == "workers" and bool(last and last.fed)

    def fewest_fed(self) -> Trial | None:
        fed = [t for t in self.done if t.probe and t.ok and t.fed]
        return min(fed, key=lambda t: (t.candidate.workers, -t.value), default=None)

    def to_confirm(self) -> list[Candidate]:
        """The full runs that decide: the best probe, the runner-up when its projection is
        within ``confirm_within`` of it, and the best of the other side (num_workers=0 if the
        best has workers, else the best with workers), so the answer to "can num_workers be
        0?" rests on full runs too."""
        ranked = self.ranked()
        if not ranked:
            return []
        if self.goal == "fed":
            return self._confirm_fed(ranked)
        best = ranked[0]
        picks = [best.candidate]
        if len(ranked) > 1 and ranked[1].value >= best.value * (1 - self.confirm_within):
            picks.append(ranked[1].candidate)
        other = self.best(workers=best.candidate.workers == 0)
        if other is not None:
            picks.append(other.candidate)
        if len(self.space.backends) > 1 and best.candidate.workers:  # processes or threads?
            rival = self.best(workers=True, threads=not best.candidate.threads)
            if rival is not None:
                picks.append(rival.candidate)
        return list(dict.fromkeys(picks))

    def to_settle(self) -> list[Candidate]:
        """The full runs to repeat once: every simpler full run (fewer workers; processes
        before threads) that the report's noise rule would tie with the fastest one, the
        simplest first, then the fastest. Tied: within ``confirm_within`` of it, or their 95%
        intervals overlap (a short run's interval can be wider than that: ±9% and ±13% tied runs
        14% apart on a folder of 25 batches an epoch). Single runs tied so keep the simplest
        setting without knowing whether the faster one is faster; with a second run of each, the
        report's interval is their range, measured minutes apart, and can tell them apart. All
        of them, not only the simplest: the report keeps the simplest of every run still tied,
        so a tied single run left out would decide (on 1,600 JPEGs, w0 and w3 settled apart and
        the report kept t1, tied on its own ±13%). Empty when no simpler full run is tied (or in
        the emulated search)."""
        full = [t for t in self.done if not t.probe and t.ok]
        if self.goal == "fed" or not full:
            return []
        best = max(full, key=lambda t: t.value)

        def simpler(c: Candidate) -> tuple[int, bool]:
            return c.workers, c.threads

        def tied(t: Trial) -> bool:
            return t.value >= best.value * (1 - self.confirm_within) or t.high >= best.low

        close = [
            t.candidate for t in full if simpler(t.candidate) < simpler(best.candidate) and tied(t)
        ]
        return [*sorted(dict.fromkeys(close), key=simpler), best.candidate] if close else []

    def first(self) -> Candidate | None:
        """The fastest-setting search's first trial, a full run: the first candidate of the
        first stage (None for the emulated search, which probes from the start)."""
        if self.goal == "fed":
            return None
        cands = self.stages()[0][1](self)
        return cands[0] if cands else None

    def _confirm_fed(self, ranked: list[Trial]) -> list[Candidate]:
        """The fewest workers fed and the fastest probe with fewer (it starved); the fastest
        probe when none was fed."""
        if (fewest := self.fewest_fed()) is None:
            return [ranked[0].candidate]
        below = [t for t in ranked if t.candidate.workers < fewest.candidate.workers]
        return [fewest.candidate, *(t.candidate for t in below[:1])]
