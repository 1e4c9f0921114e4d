"""Typed schemas for the knob bundles the code reads, registered in Hydra's ConfigStore.

YAML options in ``conf/<group>/`` extend these (``defaults: [base_<group>]``), so a typo in a
key or a wrong type fails when Hydra composes the config, before any work starts. Groups whose
options point at a class with ``_target_`` (dataset, transforms, model, optim) have no schema:
the class signature is their schema. The ranges a type cannot say (``trainer.epochs`` at least
1, ``bench.mode`` one of the modes) are each schema's ``check``, beside its fields; :func:`check`
runs them all on a job's config, before anything is built.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from loaderbench import keys


@dataclass
class LoaderConfig:
    """Every ``torch.utils.data.DataLoader`` knob a user tunes (torch's defaults)."""

    batch_size: int = 64
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int | None = None
    multiprocessing_context: str | None = None  # null (platform default), fork, spawn, forkserver
    drop_last: bool = False
    shuffle: bool = True
    timeout: float = 0.0
    # null: torch's default (file_descriptor on Linux); file_system for "too many open files"
    sharing_strategy: str | None = None
    # dataloader: torch's DataLoader (worker processes); threads: num_workers threads in this
    # process (torchdata.nodes), the same samples, order and augmentation
    backend: str = "dataloader"

    @staticmethod
    def check(lc: Any) -> None:
        if lc.backend not in keys.LOADER_BACKENDS:
            raise ConfigError(
                f"loader.backend={lc.backend}: choose one of {', '.join(keys.LOADER_BACKENDS)}"
            )
        if missing := _missing_library(lc.backend, "loader.backend=dataloader"):
            raise ConfigError(f"loader.backend={lc.backend}: needs {missing}")


def _missing_library(backend: str, instead: str) -> str | None:
    """The library ``backend`` loads with, where it is not installed here, and the fix (said
    after "needs"); None where it is installed, or none is needed."""
    need = keys.BACKEND_LIBRARIES.get(backend)
    if need is None or importlib.util.find_spec(need) is not None:
        return None
    extra = f"pip install 'loaderbench[{keys.THREADS_EXTRA}]'"
    return f"{need}, which is not installed here; {extra} (or {instead})"


@dataclass
class TrainerConfig:
    epochs: int = 3
    # Bit-identical results for a seed on CPU; on CUDA it costs speed, so it is a knob.
    deterministic: bool = True
    progress: bool = True  # a bar per epoch, only when stderr is a terminal
    # DDP ranks of the job on this machine, one process each (torch's elastic launcher; gloo on
    # a CPU, nccl on CUDA with a device per rank). loader.batch_size is per rank.
    ranks: int = 1
    # torch.set_num_threads for the step (null: torch's default); it changes the float
    # rounding of a CPU step, so histories differ across values (a knob that defines training)
    torch_threads: int | None = None

    @staticmethod
    def check(t: Any) -> None:
        if t.epochs < 1:
            raise ConfigError(f"trainer.epochs={t.epochs}: must be at least 1")
        if t.ranks < 1:
            raise ConfigError(
                f"trainer.ranks={t.ranks}: must be at least 1 (1: the job in one process)"
            )
        if t.torch_threads is not None and t.torch_threads < 1:
            raise ConfigError(
                f"trainer.torch_threads={t.torch_threads}: must be at least 1, or null for "
                "torch's default"
            )


@dataclass
class DeviceConfig:
    type: str = "cpu"  # cpu, cuda, mps, auto


@dataclass
class BenchConfig:
    mode: str = "train"  # train, loader_only, model_only, emulated
    warmup_batches: int = 0  # per epoch, excluded from the steady figures
    memory_interval_s: float = 0.2  # how often worker memory is sampled
    # A probe: every epoch stops after this many training batches (and evaluates as many); the
    # run also logs its throughput projected to full epochs (summary/projected_samples_per_s).
    probe_batches: int | None = None
    # A probe's epoch: at most this share of a full epoch's batches (and at least 4), so a
    # probe stays cheaper than a full run when epochs are short (sweep=tune sets it)
    probe_share: float = 1.0
    # The share of one core that PSS/USS reads may take (each walks the page tables: ~13 ms
    # per GB resident); 0.25 resolves the PSS peaks of runs with GBs mapped.
    pss_budget: float = 0.005
    # bench.mode=emulated: the step's time T comes from exactly one of these three
    step_ms: float | None = None  # per batch
    step_per_sample_ms: float | None = None  # x the batch's samples
    step_from: str | None = None  # a recorded model_only or train run's compute per batch
    step_sync: str = "step"  # step: wait for each step; none: queue up to 2 steps

    @staticmethod
    def check(b: Any) -> None:
        if b.mode not in keys.ALL_MODES:
            raise ConfigError(f"bench.mode={b.mode}: choose one of {', '.join(keys.ALL_MODES)}")
        BenchConfig.check_step(b)
        if b.warmup_batches < 0:
            raise ConfigError(f"bench.warmup_batches={b.warmup_batches}: must be 0 or more")
        if not 0 < b.pss_budget <= 1:
            raise ConfigError(f"bench.pss_budget={b.pss_budget}: a share of one core, in (0, 1]")
        if not 0 < b.probe_share <= 1:
            raise ConfigError(f"bench.probe_share={b.probe_share}: a share of an epoch, in (0, 1]")
        probe = b.probe_batches
        if probe is not None and probe < 4:  # its projection needs two halves of two steps each
            raise ConfigError(f"bench.probe_batches={probe}: must be at least 4, or null")

    @staticmethod
    def check_step(b: Any) -> None:
        """The emulated step's keys: exactly one in emulated mode, none in another."""
        given = {k: b.get(k) for k in STEP_KEYS if b.get(k) is not None}
        text = ", ".join(f"bench.{k}={v}" for k, v in given.items())
        if b.mode != keys.MODE_EMULATED:
            if given:
                raise ConfigError(
                    f"{text}: only bench.mode=emulated emulates a step; add "
                    "bench.mode=emulated, or drop it"
                )
            return
        if len(given) != 1:
            what = f"{text} are all set: keep one" if given else "none is set: add one"
            raise ConfigError(
                "bench.mode=emulated takes the step time from exactly one of bench.step_ms, "
                f"bench.step_per_sample_ms and bench.step_from; {what} (e.g. bench.step_ms=20)"
            )
        key, value = next(iter(given.items()))
        if key != "step_from" and not value > 0:
            raise ConfigError(
                f"bench.{key}={value}: a step takes more than 0 ms (e.g. bench.{key}=20)"
            )
        if key == "step_from" and not str(value).strip():
            raise ConfigError("bench.step_from is empty: give the id of a recorded run")
        if b.step_sync not in STEP_SYNC:
            raise ConfigError(
                f"bench.step_sync={b.step_sync}: choose step (wait for each step, as a loop "
                "that reads loss.item()) or none (queue up to 2 steps, as an accelerator does)"
            )


STEP_KEYS = ("step_ms", "step_per_sample_ms", "step_from")
STEP_SYNC = ("step", "none")


@dataclass
class TuneConfig:
    """``sweep=tune``: what the search may cost and which values it tries (src/loaderbench/tune.py)."""

    trials: int | None = None  # at most this many trials, the confirming full runs included
    budget_s: float | None = None  # no new probe after this many wall seconds
    batch_size: bool = False  # also search batch_size (half, as given, double): changes training
    torch_threads: bool = False  # also search trainer.torch_threads (1, 2, 4 .. cores): likewise
    probe_batches: int = 20  # a probe's batches per epoch
    max_workers: int | None = None  # null: 2 × the cores this process may use ÷ trainer.ranks
    contexts: list[str] | None = None  # null: every start method of the platform
    prefetch_factors: list[int] = field(default_factory=lambda: [2, 4])
    confirm_within: float = 0.1  # confirm the runner-up too when its probe is this close
    # null: search loader threads too where torchdata is installed; true: insist; false: not
    backends: bool | None = None
    probe_share: float = 0.25  # a probe's epoch: at most this share of a full one (>= 4 batches)
    # stop probing once the search has spent this share of what the grid over its space
    # would cost (estimated from its first, full run); the confirming runs are kept
    cost_share: float | None = 0.15

    CONFIRMING = 3  # trials kept for the confirming full runs (not a field: not configurable)

    @staticmethod
    def check(t: Any) -> None:
        if t.probe_batches < 4:  # its projection needs two halves of two steps each
            raise ConfigError(f"tune.probe_batches={t.probe_batches}: must be at least 4")
        reserve = TuneConfig.CONFIRMING
        if t.trials is not None and t.trials <= reserve:
            raise ConfigError(
                f"tune.trials={t.trials}: must exceed the {reserve} confirming runs it keeps "
                f"(e.g. tune.trials={reserve + 7}), or null for no limit"
            )
        if t.budget_s is not None and t.budget_s <= 0:
            raise ConfigError(f"tune.budget_s={t.budget_s}: must be above 0, or null for no limit")
        if not 0 <= t.confirm_within < 1:
            raise ConfigError(f"tune.confirm_within={t.confirm_within}: a fraction in [0, 1)")
        if not 0 < t.probe_share <= 1:
            raise ConfigError(f"tune.probe_share={t.probe_share}: a share of an epoch, in (0, 1]")
        if t.cost_share is not None and not 0 < t.cost_share <= 1:
            why = "a share of the grid's cost, in (0, 1], or null for no cap"
            raise ConfigError(f"tune.cost_share={t.cost_share}: {why}")
        if t.backends and (missing := _missing_library(keys.THREADS, "tune.backends=false")):
            raise ConfigError(f"tune.backends=true: loader threads need {missing}")
        if t.max_workers is not None and t.max_workers < 0:
            raise ConfigError(f"tune.max_workers={t.max_workers}: must be 0 or more, or null")


@dataclass
class MlflowConfig:
    enabled: bool = True
    # null: $MLFLOW_TRACKING_URI, else sqlite:///<launch dir>/outputs/mlflow.db
    tracking_uri: str | None = None
    experiment: str = "loaderbench"
    system_metrics: bool = False  # MLflow's own CPU/GPU sampling (needs psutil / pynvml)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(group="schema/loader", name="base", node=LoaderConfig)
    cs.store(group="schema/trainer", name="base", node=TrainerConfig)
    cs.store(group="schema/device", name="base", node=DeviceConfig)
    cs.store(group="schema/bench", name="base", node=BenchConfig)
    cs.store(group="schema/mlflow", name="base", node=MlflowConfig)
    cs.store(group="schema/tune", name="base", node=TuneConfig)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


def check(cfg: Any) -> None:
    """The ranges of a job's config (``trainer``, ``bench``) that its types cannot say."""
    BenchConfig.check(cfg.bench)
    TrainerConfig.check(cfg.trainer)


def locate(key: str, path: object) -> object:
    """The class or function a config value names by dotted path (``mypkg.data.MyDataset``),
    or a ConfigError naming ``key`` and the fix. (Hydra's ``get_object`` would also log the
    error at ERROR level: a second, longer message for the same mistake.)"""
    from hydra._internal.utils import _locate

    if not isinstance(path, str) or not path or path == "???":
        raise ConfigError(
            f"{key}={path}: must name a class or function, e.g. {key}=mypkg.module.Name"
        )
    try:
        return _locate(path)
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(
            f"{key}={path}: cannot import it ({type(cause).__name__}: {cause}); make its package "
            "importable here and in the workers (pip install -e it, or PYTHONPATH=the folder "
            "that holds it) and check the spelling"
        ) from None
