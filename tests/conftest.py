"""Fixtures and hooks only (shared code lives in tests/helpers.py): a config small enough to
run in seconds, a real SQLite MLflow store in a temporary folder, and a real mlflow server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.helpers import SMALL, MlflowServer, compose_config


@pytest.fixture
def small_cfg():
    """``small_cfg(*overrides)`` -> a composed config for a seconds-long run, tracking off."""

    def make(*overrides: str) -> DictConfig:
        return compose_config([*SMALL, "mlflow.enabled=false", *overrides])

    return make


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite store for the session: a store's first use runs MLflow's schema
    migrations (~1.5 s on 2 cores), a copy of a migrated file opens in ~30 ms."""
    from loaderbench import store

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    store.open_store(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def sqlite_uri(tmp_path: Path, sqlite_template: Path) -> str:
    """A real SQLite store of this test's own (a copy of the migrated template). Tests of how a
    store is first created make their own path instead."""
    shutil.copy(sqlite_template, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def mlflow_server(tmp_path: Path, sqlite_template: Path):
    """The URL of a real ``mlflow server`` on 127.0.0.1, ended by pid afterwards."""
    server = MlflowServer(tmp_path / "server", template=sqlite_template).start()
    try:
        yield server.url
    finally:
        server.stop()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
