"""Typed schemas for the knob bundles the code reads, registered in Hydra's ConfigStore.

YAML options in ``conf/<group>/`` extend these (``defaults: [base_<group>]``), so a typo in a
key or a wrong type fails when Hydra composes the config, before any work starts. Groups whose
options point at a class with ``_target_`` (dataset, transforms, model, optim) have no schema:
the class signature is their schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


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


@dataclass
class TrainerConfig:
    epochs: int = 3
    # Bit-identical results for a seed on CPU; on CUDA it costs speed, so it is a knob.
    deterministic: bool = True
    progress: bool = True  # a bar per epoch, only when stderr is a terminal


@dataclass
class DeviceConfig:
    type: str = "cpu"  # cpu, cuda, mps, auto


@dataclass
class BenchConfig:
    mode: str = "train"  # train, loader_only, model_only
    warmup_batches: int = 0  # per epoch, excluded from the steady figures
    memory_interval_s: float = 0.2  # how often worker memory is sampled


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


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""
