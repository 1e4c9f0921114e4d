"""``plan_loader``: the ``loader`` config checked and normalised into a :class:`LoaderPlan`.

Settings torch rejects only because they are meaningless (``prefetch_factor`` or
``persistent_workers`` with ``num_workers=0``) are normalised, so a sweep grid stays rectangular;
settings torch would ignore (``pin_memory`` with no accelerator) are switched off. Either way the
value actually used is recorded as ``effective.*`` with the reason. Values that are simply wrong
raise :class:`~loaderbench.config.ConfigError` naming the key, before any work starts.
"""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset

from loaderbench import keys
from loaderbench.config import ConfigError, LoaderConfig
from loaderbench.data.shards.dataset import ShardSet

TORCH_DEFAULT_PREFETCH = 2  # DataLoader's prefetch_factor when workers > 0 and it is None
TORCH_DEFAULT_SHARING = torch.multiprocessing.get_sharing_strategy()  # file_descriptor on Linux


@dataclass
class LoaderPlan:
    """The validated loader settings: what the backend is built with and what to record."""

    batch_size: int
    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None
    multiprocessing_context: str | None
    drop_last: bool
    shuffle: bool
    timeout: float
    sharing_strategy: str | None
    # what yields the batches: a key of :data:`loaderbench.data.loader.BACKENDS`
    backend: str = keys.DATALOADER
    # effective.<name> -> value actually used, and why it differs from the config (if it does)
    effective: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        """Batches the loader fetches ahead of the step: ``prefetch_factor`` per worker process
        or loader thread (0 at ``num_workers=0``). An epoch's first this many batches are the
        start-up burst, in which the workers run all at once while the step waits or shares
        the cores with them."""
        return self.num_workers * (self.prefetch_factor or TORCH_DEFAULT_PREFETCH)


def _fail(key: str, value: Any, why: str, fix: str) -> ConfigError:
    return ConfigError(f"loader.{key}={value}: {why}; {fix}")


def _one_of(key: str, value: str | None, offered: list[str], who: str, default: str) -> None:
    """``value`` is null or one of ``offered`` (``who``: who offers them, with ``{}``)."""
    if value is not None and value not in offered:
        why = who.format(", ".join(offered))
        raise _fail(key, value, why, f"pass one of those, or null for {default}")


def plan_loader(cfg: LoaderConfig, *, device: torch.device) -> LoaderPlan:
    """Validate ``cfg`` and normalise it for ``device``; raise ConfigError on a wrong value."""
    LoaderConfig.check(cfg)
    if cfg.batch_size < 1:
        raise _fail("batch_size", cfg.batch_size, "must be at least 1", "e.g. loader.batch_size=64")
    if cfg.num_workers < 0:
        raise _fail(
            "num_workers",
            cfg.num_workers,
            "must be 0 or more (0 loads in the main process)",
            "e.g. loader.num_workers=0",
        )
    if cfg.prefetch_factor is not None and cfg.prefetch_factor < 1:
        raise _fail(
            "prefetch_factor",
            cfg.prefetch_factor,
            "must be at least 1 batch per worker",
            "pass loader.prefetch_factor=null for torch's default (2)",
        )
    _one_of(
        "multiprocessing_context",
        cfg.multiprocessing_context,
        multiprocessing.get_all_start_methods(),
        "this platform offers {}",
        "the platform default",
    )
    _one_of(
        "sharing_strategy",
        cfg.sharing_strategy,
        sorted(torch.multiprocessing.get_all_sharing_strategies()),
        "torch offers {} here",
        "torch's default",
    )
    if cfg.timeout < 0:
        raise _fail(
            "timeout",
            cfg.timeout,
            "must be 0 (wait forever) or more seconds",
            "e.g. loader.timeout=0",
        )

    plan = LoaderPlan(
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        pin_memory=cfg.pin_memory,
        persistent_workers=cfg.persistent_workers,
        prefetch_factor=cfg.prefetch_factor,
        multiprocessing_context=cfg.multiprocessing_context,
        drop_last=cfg.drop_last,
        shuffle=cfg.shuffle,
        timeout=cfg.timeout,
        sharing_strategy=cfg.sharing_strategy,
        backend=cfg.backend,
    )
    if plan.backend == keys.THREADS:
        _plan_threads(plan)
    if cfg.num_workers == 0:
        _set_unused(plan, "num_workers=0 loads in the main process", {
            "prefetch_factor": (None, "nothing is prefetched"),
            "persistent_workers": (False, "there are no workers to keep"),
            "multiprocessing_context": (None, "no process is started"),
            "timeout": (0.0, "torch ignores the timeout"),
            "sharing_strategy": (None, "nothing is shared"),
        })  # fmt: skip
    if cfg.pin_memory and device.type not in ("cuda", "xpu", "mps"):
        plan.pin_memory = False
        plan.reasons["pin_memory"] = (
            f"the device is {device.type}: torch ignores pin_memory without an accelerator"
        )

    # Record what actually runs, for every knob that can differ from the config.
    workers = plan.num_workers > 0
    processes = workers and plan.backend == keys.DATALOADER  # threads start none
    plan.effective = {
        "pin_memory": plan.pin_memory,
        "persistent_workers": plan.persistent_workers,
        "prefetch_factor": (plan.prefetch_factor or TORCH_DEFAULT_PREFETCH) if workers else None,
        "multiprocessing_context": (
            (plan.multiprocessing_context or multiprocessing.get_start_method())
            if processes
            else None
        ),
        "timeout": plan.timeout,
        "sharing_strategy": (plan.sharing_strategy or TORCH_DEFAULT_SHARING) if processes else None,
        "backend": plan.backend,
        "backend_library": backend_library(plan.backend),
        "gil": gil_enabled(),
    }
    return plan


def gil_enabled() -> bool:
    """Whether this Python runs with the GIL (a free-threaded build may run without it)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return bool(is_enabled()) if is_enabled is not None else True


def backend_library(backend: str) -> str:
    """The library (and version) that yields the batches: ``torch 2.14.1``, ``torchdata 0.11.0``."""
    name = keys.BACKEND_LIBRARIES.get(backend, "torch")
    return f"{name} {importlib.metadata.version(name)}"


def _plan_threads(plan: LoaderPlan) -> None:
    """What the DataLoader's process knobs mean under loader threads: nothing, each recorded
    with its reason (a sweep grid stays rectangular). Zero threads is the dataloader backend
    at num_workers=0: the main process loads."""
    if plan.num_workers == 0:
        plan.backend = keys.DATALOADER
        plan.reasons["backend"] = (
            "num_workers=0 threads load in the main process: the dataloader backend at "
            "num_workers=0 does just that"
        )
        return
    _set_unused(plan, "loader threads run in this process", {
        "multiprocessing_context": (None, "no process is started"),
        "persistent_workers": (
            False, "an epoch's threads start in milliseconds, and nothing is re-imported"
        ),
        "sharing_strategy": (None, "batches stay in its memory, none is shared"),
    })  # fmt: skip


def _set_unused(plan: LoaderPlan, because: str, knobs: dict[str, tuple[Any, str]]) -> None:
    """Each knob that means nothing here back to its inert value, recorded with the reason
    (``because: why``)."""
    for knob, (inert, why) in knobs.items():
        if getattr(plan, knob) != inert:
            setattr(plan, knob, inert)
            plan.reasons[knob] = f"{because}: {why}"


def fit_plan(plan: LoaderPlan, dataset: Dataset) -> None:
    """What the dataset itself rules out: an iterable dataset sets its own order, so
    ``shuffle=true`` does nothing (recorded, like any setting that was not used); loader
    threads read samples by index, so a stream cannot be read by them."""
    streamed = isinstance(dataset, IterableDataset) or isinstance(
        getattr(dataset, "base", None), ShardSet
    )
    if plan.backend == keys.THREADS and streamed:
        raise _fail(
            "backend",
            plan.backend,
            "loader threads read samples by index, and this dataset's training split is a "
            "stream (an IterableDataset, or tar shards streamed by DataLoader workers)",
            "use loader.backend=dataloader",
        )
    if isinstance(dataset, IterableDataset) and plan.shuffle:
        plan.shuffle = False
        plan.effective["shuffle"] = False
        plan.reasons["shuffle"] = "an IterableDataset yields in its own order: nothing is shuffled"
