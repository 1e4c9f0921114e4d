"""Shared fixtures: the real config composed with Hydra's compose API, small enough to run in
seconds, and a real SQLite MLflow store in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from loaderbench.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# A few seconds per run on 2 cores: 256 training images of 32x32, one epoch.
SMALL = [
    "dataset.size=256",
    "dataset.val_size=64",
    "dataset.image_size=32",
    "trainer.epochs=1",
    "trainer.progress=false",
    "loader.batch_size=32",
]


def compose_config(overrides: list[str] = ()) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture
def small_cfg():
    """``small_cfg(*overrides)`` -> a composed config for a seconds-long run, tracking off."""

    def make(*overrides: str) -> DictConfig:
        return compose_config([*SMALL, "mlflow.enabled=false", *overrides])

    return make


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
