"""What ``sweep=tune`` may try: a :class:`Candidate` (one setting of the tuned knobs) and the
:class:`Space` of values each knob takes, from ``tune.*``, the command line and the platform,
and the keys a tune sweep varies (:func:`tuned_keys`). The search over it is
:mod:`loaderbench.tune`'s."""

from __future__ import annotations

import importlib.util
import itertools
import multiprocessing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from loaderbench import keys, naming
from loaderbench.config import ConfigError
from loaderbench.data.loader import TORCH_DEFAULT_PREFETCH
from loaderbench.provenance import cpu_cores

WORKERS, BACKEND = keys.WORKERS_PARAM, keys.BACKEND_PARAM
CONTEXT, PERSISTENT = "loader.multiprocessing_context", "loader.persistent_workers"
PREFETCH, PIN, BATCH = "loader.prefetch_factor", "loader.pin_memory", keys.BATCH_SIZE_PARAM
THREADS = keys.TORCH_THREADS_PARAM  # the step's intra-op threads (not loader threads)
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
    torch_threads: int | None = None  # None: not tuned, the config's own value
    backend: str = keys.DATALOADER  # threads: loader threads (no context, nothing persists)

    @property
    def threads(self) -> bool:
        """Loader threads (``loader.backend=threads``), not worker processes."""
        return self.backend == keys.THREADS

    def settings(self) -> dict[str, Any]:
        """The knobs this candidate sets: the worker knobs only with workers (torch ignores
        them without), pinning, batch size and the step's threads only when they are tuned;
        loader threads set the backend and their buffer (their process knobs mean nothing)."""
        out: dict[str, Any] = {WORKERS: self.workers}
        if self.threads:
            out = {BACKEND: self.backend, WORKERS: self.workers, PREFETCH: self.prefetch}
        elif self.workers:
            out |= {CONTEXT: self.context, PERSISTENT: self.persistent, PREFETCH: self.prefetch}
        if self.pin is not None:
            out[PIN] = self.pin
        if self.batch_size is not None:
            out[BATCH] = self.batch_size
        if self.torch_threads is not None:
            out[THREADS] = self.torch_threads
        return out

    @property
    def label(self) -> str:
        """As its run is named: ``w0``, ``w2-fork-persist-pf2``, ``t2-pf2`` (loader threads)."""
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
    torch_threads: list[int | None] = field(default_factory=lambda: [None])
    cores: int = 1  # the cores the trials may use (how many a thread count leaves to workers)
    backends: list[str] = field(default_factory=lambda: [keys.DATALOADER])

    def baseline(
        self, workers: int, batch_size: int | None = None, backend: str = keys.DATALOADER
    ) -> Candidate:
        """The cheapest start-up for ``workers``: first context, persistent if it matters; the
        most threads tried (torch's default is one a core). Loader threads: their default
        buffer."""
        threads = self.torch_threads[-1]
        if workers == 0:
            return Candidate(0, pin=self.pin[-1], batch_size=batch_size, torch_threads=threads)
        if backend == keys.THREADS:
            return Candidate(
                workers, prefetch=self.prefetch[0], pin=self.pin[-1], batch_size=batch_size,
                torch_threads=threads, backend=backend,
            )  # fmt: skip
        return Candidate(
            workers,
            self.contexts[0],
            self.persistent[-1],
            self.prefetch[0],
            self.pin[-1],
            batch_size,
            threads,
        )

    def grid(self) -> list[Candidate]:
        """Every distinct setting (num_workers=0 once per batch size and pinning: the worker
        knobs do nothing there): what an exhaustive sweep would run."""
        out = []
        for bs, tt in itertools.product(self.batch_sizes, self.torch_threads):
            for pin in self.pin:
                for w in self.workers:
                    if w == 0:
                        out.append(Candidate(0, pin=pin, batch_size=bs, torch_threads=tt))
                        continue
                    if keys.DATALOADER in self.backends:
                        for ctx in self.contexts:
                            for persistent in self.persistent:
                                for pf in self.prefetch:
                                    out.append(Candidate(w, ctx, persistent, pf, pin, bs, tt))
                    if keys.THREADS in self.backends:
                        out += [
                            Candidate(
                                w,
                                prefetch=pf,
                                pin=pin,
                                batch_size=bs,
                                torch_threads=tt,
                                backend=keys.THREADS,
                            )  # fmt: skip
                            for pf in self.prefetch
                        ]
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
        torch_threads=thread_counts(cpu_cores()) if t.get("torch_threads") else [None],
        cores=cpu_cores(),
        backends=[keys.DATALOADER, keys.THREADS] if search_threads(t) else [keys.DATALOADER],
    )
    for key, values in pinned.items():
        field_name, cast = PINNABLE[key]
        setattr(space, field_name, [cast(v) for v in values])
    return space


def thread_counts(cores: int) -> list[int]:
    """The step's thread counts ``tune.torch_threads=true`` tries: 1, 2, 4, ... and the cores."""
    return sorted({2**i for i in range(cores.bit_length()) if 2**i <= cores} | {cores})


def search_threads(t: Any) -> bool:
    """``tune.backends``: true, or null where the thread backend's library is installed."""
    if t.get("backends") is not None:
        return bool(t.backends)
    return importlib.util.find_spec(keys.BACKEND_LIBRARIES[keys.THREADS]) is not None


def _bool(v: str) -> bool:
    return v.lower() == "true"


def _int_or_null(v: str) -> int | None:
    return None if v == "null" else int(v)  # null: torch's default


PINNABLE = {
    WORKERS: ("workers", int),
    CONTEXT: ("contexts", str),
    PERSISTENT: ("persistent", _bool),
    PREFETCH: ("prefetch", _int_or_null),
    PIN: ("pin", _bool),
    THREADS: ("torch_threads", _int_or_null),
    BACKEND: ("backends", str),
}


def tuned_keys(config: DictConfig) -> list[str]:
    """The keys a tune sweep varies, for the children's names and the parent's params."""
    out = [WORKERS, CONTEXT, PERSISTENT, PREFETCH]
    if search_threads(config.tune):
        out.insert(0, BACKEND)
    if accelerator(config):
        out.append(PIN)
    if config.tune.batch_size:
        out.append(BATCH)
    if config.tune.get("torch_threads"):
        out.append(THREADS)
    return [*out, keys.PROBE_PARAM]


def accelerator(config: DictConfig) -> bool:
    """Whether the jobs will run on an accelerator (then pinning is a tuned knob)."""
    from loaderbench.devices import resolve_device

    try:
        return resolve_device(config.device.type).type != "cpu"
    except ConfigError:
        return False  # the jobs will say why, each in its own run
