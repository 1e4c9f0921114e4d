"""Code the test files share (fixtures and hooks stay in conftest.py): the repository's
paths, the real config composed with Hydra's compose API, the scripts loaded as modules, and
sweep children as report rows."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from loaderbench import keys
from loaderbench.config import register_configs
from loaderbench.report import RunRow

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


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, so a test can call its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(f"{name}_cli", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- sweep children as report rows (in memory, or written to a store by test_report) ----------
LOSS = [1.25, 0.75, 0.5]
ACC = [0.5, 0.625, 0.75]
SUMMARY = (  # what child() records, in this order
    keys.SUMMARY_SAMPLES_PER_S,
    keys.SUMMARY_STEADY,
    keys.SUMMARY_FIRST_BATCH,
    keys.SUMMARY_DATA_WAIT,
    keys.PEAK_RSS,
    keys.SUMMARY_VAL_ACC,
)


def child(
    name: str,
    sps: float | None = None,
    status: str = "FINISHED",
    *,
    params: dict[str, str] | None = None,
    loss: list[float] = LOSS,
    acc: list[float] = ACC,
    error: str | None = None,
    noise: float | None = 0.02,
) -> RunRow:
    """A sweep child named like ``w2-fork-bs64`` (num_workers from the name). A run that did not
    finish has no metrics; ``error`` is the exception line of its error.txt. ``noise``: the
    relative half-width of its own steady-throughput interval (None: too short to have one)."""
    workers = name.split("-")[0][1:]
    params = {
        "dataset.name": "shapes",
        "bench.mode": "train",
        "loader.num_workers": workers,
        "loader.multiprocessing_context": "null" if workers == "0" else "fork",
        "effective.num_workers": workers,
        "data.fingerprint": "abc123",
    } | (params or {})
    row = RunRow(f"id-{name}", name, status, params, {}, error=error)
    if status == "FINISHED":
        steady = None if sps is None else sps * 1.0625
        values = (sps, steady, 0.0123456, 0.25, 512.5, 0.75)
        row.metrics = {k: v for k, v in zip(SUMMARY, values, strict=True) if v is not None}
        if steady is not None and noise is not None:
            row.metrics[keys.SUMMARY_STEADY_LOW] = steady * (1 - noise)
            row.metrics[keys.SUMMARY_STEADY_HIGH] = steady * (1 + noise)
    if status == "FINISHED" and params["bench.mode"] == "train":
        row.histories = {keys.LOSS_TRAIN: list(loss), keys.ACC_VAL: list(acc)}
    return row


ERROR = "RuntimeError: DataLoader worker (pid 4242) exited unexpectedly"


def traceback_of(error: str) -> str:
    """An error.txt whose exception line is ``error``."""
    return (
        "Traceback (most recent call last):\n"
        '  File "loaderbench/experiment.py", line 250, in run\n'
        "    epochs = train(setup, cfg, tracker)\n"
        f"{error}\n"
    )


def basic_sweep() -> list[RunRow]:
    spawn = {"loader.multiprocessing_context": "spawn"}
    return [
        child("w0-bs64", 667.25),
        child("w2-fork-bs64", 1001.125),
        child("w2-spawn-bs64", 900.5, params=spawn),
        child("w4-fork-bs64", 1234.5678901234),
        child("w4-spawn-bs64", status="FAILED", error=ERROR, params=spawn),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite store in ``folder`` and artifacts
    served over HTTP; ``stop()`` ends it by pid, ``start()`` brings it back on the same port
    and store. ``ui=`` an existing store: ``mlflow ui`` on it instead, as a user runs it."""

    def __init__(self, folder: Path, port: int | None = None, ui: str | None = None):
        self.folder, self.port, self.ui = folder, port or free_port(), ui
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        where = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        if self.ui:
            return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", self.ui, *where]
        return [
            sys.executable, "-m", "mlflow", "server", *where,
            "--backend-store-uri", f"sqlite:///{self.folder}/server.db",
            "--artifacts-destination", str(self.folder / "server-artifacts"),
        ]  # fmt: skip

    def start(self, timeout_s: float = 120) -> MlflowServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("mlflow server exited at start") from None
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None


def still_running(pids) -> list[int]:
    """Those of ``pids`` that are alive (not gone, not zombies waiting for their parent)."""
    import psutil

    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            pass
    return alive
