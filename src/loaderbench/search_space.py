"""``sweep=tune``'s search space: the candidates (one setting of the tuned knobs each), the
values each knob may take, and the exhaustive grid over them that the search is measured
against (:mod:`loaderbench.tune` searches it)."""

from __future__ import annotations

import importlib.util
import multiprocessing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from loaderbench import keys, naming
from loaderbench.data.loader import TORCH_DEFAULT_PREFETCH
from loaderbench.provenance import cpu_cores

WORKERS, BACKEND = keys.WORKERS_PARAM, keys.BACKEND_PARAM
CONTEXT, PERSISTENT = "loader.multiprocessing_context", "loader.persistent_workers"
PREFETCH, PIN, BATCH = "loader.prefetch_factor", "loader.pin_memory", keys.BATCH_SIZE_PARAM
CHEAPEST_START = ("fork", "forkserver", "spawn")  # the order a context is tried in


@dataclass(frozen=True)
class Candidate:
    """One setting of the tuned knobs (a knob at ``None`` is left to torch's default)."""

    workers: int
    context: str | None = None
    persistent: bool = False
    prefetch: int | None = None
    pin: bool | None = None  # None: not tuned (no accelerator), the config's own value
    batch_size: int | None = None  # None: not tuned, the config's own value
    backend: str = keys.DATALOADER  # threads: loader threads (no context, nothing persists)

    @property
    def threads(self) -> bool:
        return self.backend == keys.THREADS

    def settings(self) -> dict[str, Any]:
        """The knobs this candidate sets: the worker knobs only with workers (torch ignores
        them without), pinning and batch size only when they are tuned; loader threads set
        the backend and their buffer (their process knobs mean nothing)."""
        out: dict[str, Any] = {WORKERS: self.workers}
        if self.threads:
            out = {BACKEND: self.backend, WORKERS: self.workers, PREFETCH: self.prefetch}
        elif self.workers:
            out |= {CONTEXT: self.context, PERSISTENT: self.persistent, PREFETCH: self.prefetch}
        if self.pin is not None:
            out[PIN] = self.pin
        if self.batch_size is not None:
            out[BATCH] = self.batch_size
        return out

    @property
    def label(self) -> str:
        """As its run is named: ``w0``, ``w2-fork-persist-pf2``, ``t2-pf2``."""
        parts = [
            f"t{v}" if k == WORKERS and self.threads else naming.label(k, v)
            for k, v in self.settings().items()
            if k != BACKEND
        ]
        return "-".join(parts)


def spread(workers: list[int]) -> list[int]:
    """``workers`` in an order that covers the range early: 0 first, then by how many times
    2 divides the count (4, 2, 1, 3 for 0–4; 8, 4, 2, 6, 1, 3, 5, 7 for 0–8)."""

    def twos(w: int) -> int:
        return (w & -w).bit_length()

    return sorted(workers, key=lambda w: (w != 0, -twos(w) if w else 0, w))


@dataclass
class Space:
    """The values each tuned knob may take, from ``tune.*``, the config and the platform."""

    workers: list[int]
    contexts: list[str]
    persistent: list[bool]
    prefetch: list[int]
    pin: list[bool | None]
    batch_sizes: list[int | None]
    backends: list[str] = field(default_factory=lambda: [keys.DATALOADER])

    def baseline(
        self, workers: int, batch_size: int | None = None, backend: str = keys.DATALOADER
    ) -> Candidate:
        """The cheapest start-up for ``workers``: first context, persistent if it matters
        (loader threads: their default buffer)."""
        if workers == 0:
            return Candidate(0, pin=self.pin[-1], batch_size=batch_size)
        if backend == keys.THREADS:
            return Candidate(
                workers, prefetch=self.prefetch[0], pin=self.pin[-1], batch_size=batch_size,
                backend=backend,
            )  # fmt: skip
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
                    if keys.DATALOADER in self.backends:
                        for ctx in self.contexts:
                            for persistent in self.persistent:
                                for pf in self.prefetch:
                                    out.append(Candidate(w, ctx, persistent, pf, pin, bs))
                    if keys.THREADS in self.backends:
                        out += [
                            Candidate(w, prefetch=pf, pin=pin, batch_size=bs, backend=keys.THREADS)
                            for pf in self.prefetch
                        ]
        return out


def build_space(config: DictConfig, pinned: dict[str, list[str]], accelerator: bool) -> Space:
    """The search space: ``tune.*``, narrowed by values the user gave on the command line
    (``loader.num_workers=0,2`` searches those two; ``loader.multiprocessing_context=spawn``
    fixes it)."""
    t = config.tune
    max_workers = t.max_workers if t.max_workers is not None else 2 * cpu_cores()
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
        backends=[keys.DATALOADER, keys.THREADS] if search_threads(t) else [keys.DATALOADER],
    )
    for key, values in pinned.items():
        field_name, cast = PINNABLE[key]
        setattr(space, field_name, [cast(v) for v in values])
    return space


def search_threads(t: Any) -> bool:
    """``tune.backends``: true, or null where the thread backend's library is installed."""
    if t.get("backends") is not None:
        return bool(t.backends)
    return importlib.util.find_spec(keys.BACKEND_LIBRARIES[keys.THREADS]) is not None


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
    BACKEND: ("backends", str),
}
