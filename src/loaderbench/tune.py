"""``sweep=tune``: find the fastest loader settings for a third of a grid's cost.

The knobs that leave training unchanged are nearly separable, and the search uses that:

1. **workers**: every ``num_workers`` from 0 to ``tune.max_workers`` (2 × the cores, ÷ the ranks
   with ``trainer.ranks=N``: workers per rank, as each rank builds its loader), with the
   cheapest start-up (fork where the platform has it, persistent workers when there is more
   than one epoch). The worker count sets the steady rate: how the loader's processes and the training
   step share the cores.
2. **start-up**: for the fastest setting with workers, every other context (and, on an
   accelerator, pinning) with its persistence, then the other persistence with its context. A
   context's start-up cost does not depend on persistence, which only decides how often it is
   paid.
3. **prefetch**: the other ``tune.prefetch_factors`` for the fastest so far (the queue depth).

Each of those trials is a *probe*: the user's own job with ``bench.probe_batches`` batches an
epoch (and at most as many validation batches), ranked by its throughput projected to full epochs
(:func:`loaderbench.timing.projected_samples_per_s`: start-up as measured, the rest at the
probe's steady rate). Then full runs *confirm*: the best probe, the runner-up when its
projection is within ``tune.confirm_within`` of the best, and the best of the other side
(``num_workers=0`` when the best has workers, else the best with workers). The sweep's report
decides among the full runs with its usual noise rule, so the answer (parent tags
``loaderbench.winner`` and ``loaderbench.dataloader``, the ``DataLoader(...)`` snippet) comes
from full runs only. ``tune.trials`` (all trials) and ``tune.budget_s`` (wall seconds) stop
the probing early; the confirming runs always run: they are the answer.

This module is the search itself, pure over the config and the trials' figures; the sweeper in
``hydra_plugins.loaderbench_tune`` runs its trials through Hydra's launcher.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from loaderbench import keys, naming
from loaderbench.config import ConfigError, TuneConfig
from loaderbench.data.loader import TORCH_DEFAULT_PREFETCH
from loaderbench.provenance import cpu_cores

log = logging.getLogger(__name__)
WORKERS = keys.WORKERS_PARAM
CONTEXT, PERSISTENT = "loader.multiprocessing_context", "loader.persistent_workers"
PREFETCH, PIN, BATCH = "loader.prefetch_factor", "loader.pin_memory", keys.BATCH_SIZE_PARAM
CHEAPEST_START = ("fork", "forkserver", "spawn")  # the order a context is tried in
RESERVE = TuneConfig.CONFIRMING  # trials kept for the confirming runs


@dataclass(frozen=True)
class Candidate:
    """One setting of the tuned knobs (a knob at ``None`` is left to torch's default)."""

    workers: int
    context: str | None = None
    persistent: bool = False
    prefetch: int | None = None
    pin: bool | None = None  # None: not tuned (no accelerator), the config's own value
    batch_size: int | None = None  # None: not tuned, the config's own value

    def settings(self) -> dict[str, Any]:
        """The knobs this candidate sets: the worker knobs only with workers (torch ignores
        them without), pinning and batch size only when they are tuned."""
        out: dict[str, Any] = {WORKERS: self.workers}
        if self.workers:
            out |= {CONTEXT: self.context, PERSISTENT: self.persistent, PREFETCH: self.prefetch}
        if self.pin is not None:
            out[PIN] = self.pin
        if self.batch_size is not None:
            out[BATCH] = self.batch_size
        return out

    @property
    def label(self) -> str:
        """As its run is named: ``w0``, ``w2-fork-persist-pf2``."""
        return "-".join(naming.label(k, v) for k, v in self.settings().items())


@dataclass
class Space:
    """The values each tuned knob may take, from ``tune.*``, the config and the platform."""

    workers: list[int]
    contexts: list[str]
    persistent: list[bool]
    prefetch: list[int]
    pin: list[bool | None]
    batch_sizes: list[int | None]

    def baseline(self, workers: int, batch_size: int | None = None) -> Candidate:
        """The cheapest start-up for ``workers``: first context, persistent if it matters."""
        if workers == 0:
            return Candidate(0, pin=self.pin[-1], batch_size=batch_size)
        return Candidate(
            workers,
            self.contexts[0],
            self.persistent[-1],
            self.prefetch[0],
            self.pin[-1],
            batch_size,
        )

    def grid(self) -> list[Candidate]:
        """Every distinct setting (num_workers=0 once per batch size and pinning: the worker
        knobs do nothing there): what an exhaustive sweep would run."""
        out = []
        for bs in self.batch_sizes:
            for pin in self.pin:
                for w in self.workers:
                    if w == 0:
                        out.append(Candidate(0, pin=pin, batch_size=bs))
                        continue
                    for ctx in self.contexts:
                        for persistent in self.persistent:
                            for pf in self.prefetch:
                                out.append(Candidate(w, ctx, persistent, pf, pin, bs))
        return out


def build_space(config: DictConfig, pinned: dict[str, list[str]], accelerator: bool) -> Space:
    """The search space: ``tune.*``, narrowed by values the user gave on the command line
    (``loader.num_workers=0,2`` searches those two; ``loader.multiprocessing_context=spawn``
    fixes it)."""
    t = config.tune
    # with ranks, each builds a loader: workers per rank, the cores shared by them all
    ranks = max(int(OmegaConf.select(config, keys.RANKS_PARAM, default=1) or 1), 1)
    max_workers = t.max_workers if t.max_workers is not None else 2 * cpu_cores() // ranks
    available = sorted(
        multiprocessing.get_all_start_methods(), key=lambda c: CHEAPEST_START.index(c)
    )
    contexts = list(t.contexts) if t.contexts else available
    bs = int(config.loader.batch_size)
    space = Space(
        workers=list(range(max_workers + 1)),
        contexts=contexts,
        # persistent workers only differ from the others from the second epoch on
        persistent=[False, True] if config.trainer.epochs > 1 else [False],
        prefetch=list(t.prefetch_factors) or [TORCH_DEFAULT_PREFETCH],
        pin=[False, True] if accelerator else [None],
        batch_sizes=sorted({max(bs // 2, 1), bs, bs * 2}) if t.batch_size else [None],
    )
    for key, values in pinned.items():
        field_name, cast = PINNABLE[key]
        setattr(space, field_name, [cast(v) for v in values])
    return space


def _bool(v: str) -> bool:
    return v.lower() == "true"


def _prefetch(v: str) -> int | None:
    return None if v == "null" else int(v)  # null: torch's default


PINNABLE = {
    WORKERS: ("workers", int),
    CONTEXT: ("contexts", str),
    PERSISTENT: ("persistent", _bool),
    PREFETCH: ("prefetch", _prefetch),
    PIN: ("pin", _bool),
}


@dataclass
class Trial:
    candidate: Candidate
    probe: bool
    value: float = math.nan  # projected samples/s of a probe, summary samples/s of a full run

    @property
    def ok(self) -> bool:
        return not math.isnan(self.value)


@dataclass
class Search:
    """The staged search's state: the trials so far and what the budget has left."""

    space: Space
    probe_batches: int
    trials: int | None = None
    budget_s: float | None = None
    confirm_within: float = 0.1
    done: list[Trial] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def probes_left(self, reserve: int) -> int | None:
        """How many more probes the budget allows, keeping ``reserve`` trials for confirming;
        None for no limit."""
        if self.budget_s is not None and self.elapsed_s >= self.budget_s:
            return 0
        if self.trials is None:
            return None
        return max(self.trials - len(self.done) - reserve, 0)

    def fresh(self, cands: list[Candidate]) -> list[Candidate]:
        tried = {t.candidate for t in self.done if t.probe}
        return [c for c in dict.fromkeys(cands) if c not in tried]

    def best(self, *, workers: bool | None = None) -> Trial | None:
        probes = [t for t in self.done if t.probe and t.ok]
        if workers is not None:
            probes = [t for t in probes if (t.candidate.workers > 0) == workers]
        return max(probes, key=lambda t: t.value, default=None)

    def stages(self) -> list[tuple[str, Any]]:
        """(name, function of the search so far -> that stage's candidates), in order."""
        sp = self.space

        def workers(_: Search) -> list[Candidate]:
            return [sp.baseline(w, bs) for bs in sp.batch_sizes for w in sp.workers]

        def startup(s: Search) -> list[Candidate]:
            best = s.best(workers=True)
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

        return [("workers", workers), ("start-up", startup), ("prefetch", prefetch)]

    def to_confirm(self) -> list[Candidate]:
        """The full runs that decide: the best probe, the runner-up when its projection is
        within ``confirm_within`` of it, and the best of the other side (num_workers=0 if the
        best has workers, else the best with workers), so the answer to "can num_workers be
        0?" rests on full runs too."""
        ranked = sorted((t for t in self.done if t.probe and t.ok), key=lambda t: -t.value)
        if not ranked:
            return []
        best = ranked[0]
        picks = [best.candidate]
        if len(ranked) > 1 and ranked[1].value >= best.value * (1 - self.confirm_within):
            picks.append(ranked[1].candidate)
        other = self.best(workers=best.candidate.workers == 0)
        if other is not None:
            picks.append(other.candidate)
        return list(dict.fromkeys(picks))


def tuned_keys(config: DictConfig) -> list[str]:
    """The keys a tune sweep varies, for the children's names and the parent's params."""
    out = [WORKERS, CONTEXT, PERSISTENT, PREFETCH]
    if accelerator(config):
        out.append(PIN)
    if config.tune.batch_size:
        out.append(BATCH)
    return [*out, keys.PROBE_PARAM]


def accelerator(config: DictConfig) -> bool:
    """Whether the jobs will run on an accelerator (then pinning is a tuned knob)."""
    from loaderbench.devices import resolve_device

    try:
        return resolve_device(config.device.type).type != "cpu"
    except ConfigError:
        return False  # the jobs will say why, each in its own run
