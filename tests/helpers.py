"""Code the test files share (fixtures and hooks stay in conftest.py): the repository's
paths, the real config composed with Hydra's compose API, the scripts loaded as modules, and
sweep children as report rows."""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import ModuleType

import torch
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from loaderbench import keys
from loaderbench.config import register_configs
from loaderbench.report import RunRow

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Under a second per run on 2 cores: 256 training images of 16x16, one epoch.
SMALL = [
    "dataset.size=256",
    "dataset.val_size=64",
    "dataset.image_size=16",
    "trainer.epochs=1",
    "trainer.progress=false",
    "loader.batch_size=32",
]


def compose_config(overrides: list[str] = ()) -> DictConfig:
    """The job's config, as ``python run.py OVERRIDES`` composes it.

    Hydra builds the defaults list on every call (~0.1 s, and the tests compose ~200 times), yet
    most calls differ only in values. So the config groups chosen are composed once, and the
    value overrides are applied to a copy by Hydra's own code, as it applies them after every
    composition. Anything else (a sweep, a ``hydra/`` group), or an override Hydra would
    refuse, goes through the whole composition, with Hydra's own error."""
    try:
        groups, values = _split_overrides(list(overrides))
        cfg = copy.deepcopy(_compose_groups(tuple(groups)))
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        return cfg
    except Exception:  # composed again below: Hydra's own error, or its config
        return _compose(list(overrides))


def _compose(overrides: list[str]) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@functools.cache
def _compose_groups(groups: tuple[str, ...]) -> DictConfig:
    return _compose(list(groups))


def _split_overrides(overrides: list[str]) -> tuple[list[str], list]:
    """The config group choices (``transforms=heavy``) and the parsed value overrides."""
    groups, values = [], []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.is_sweep_override() or "/" in key or key.startswith("hydra"):
            raise ValueError(override.input_line)  # for the whole composition
        if (CONF / key.replace(".", "/")).is_dir():
            groups.append(override.input_line)
        else:
            values.append(override)
    return groups, values


def job_env(**extra: str) -> dict[str, str]:
    """The environment of a job a test starts in a subprocess: this process's, less what
    would send its runs elsewhere (a tracking URI, a sweep's parent run and swept keys); the
    test names its own store on the command line."""
    drop = ("MLFLOW_TRACKING_URI", keys.PARENT_ENV, keys.SWEPT_ENV)
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


def run_mid_epoch(uri: str, proc: subprocess.Popen, query: str, *, each=None, timeout=300):
    """The first run matching ``query`` that has logged a metric (its first epoch is recorded:
    it is mid-run) in the store at ``uri`` that the job ``proc`` creates; None if the job ends
    or ``timeout`` seconds pass first. ``each()`` is called at every look."""
    from loaderbench import store

    db, client = Path(uri.removeprefix("sqlite:///")), None
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if each is not None:
            each()
        if client is None and db.exists():
            client = store.open_store(uri)  # under the lock of a store being created
        if client is not None and (exp := client.get_experiment_by_name("loaderbench")):
            for run in client.search_runs([exp.experiment_id], query):
                if run.data.metrics:
                    return run
        time.sleep(0.5)
    return None


def run_in_memory(cfg: DictConfig, launch=None, *, finite: bool = False):
    """Run one job with an in-memory tracker, assert it FINISHED (and, with ``finite``, that
    every metric it logged is a finite number); return the tracker."""
    from loaderbench import tracking
    from loaderbench.experiment import Launch, run

    tracker = tracking.InMemoryTracker()
    run(cfg, tracker=tracker, launch=launch or Launch())
    assert tracker.status == "FINISHED"
    if finite:
        for key, values in tracker.metrics.items():
            assert all(math.isfinite(v) for _, v in values), key
    return tracker


def loader_batches(cfg: DictConfig, epochs: int = 2) -> list[tuple]:
    """Every training batch a job's loader delivers over ``epochs`` epochs, as the measured loop
    would get them: what training sees, at a fraction of training's cost."""
    from loaderbench.data.loader import close_loader, set_epoch
    from loaderbench.experiment import prepare

    setup = prepare(cfg)
    try:
        batches = []
        for epoch in range(epochs):
            set_epoch(setup.train_loader, epoch)
            batches += [tuple(batch) for batch in setup.train_loader]
        return batches
    finally:
        close_loader(setup.train_loader)
        close_loader(setup.val_loader)


def same_batches(a: list[tuple], b: list[tuple]) -> bool:
    """Bit for bit: the same tensors (values, dtypes, shapes) in the same order."""
    return len(a) == len(b) and all(
        len(x) == len(y)
        and all(torch.equal(u, v) and u.dtype == v.dtype for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


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
    and store. ``ui=`` an existing store: ``mlflow ui`` on it instead, as a user runs it.
    ``admin_password=``: MLflow's ``--app-name basic-auth``, whose user ``admin`` has that
    password (12 characters or more; given in the server's environment, never in a file), and
    the server's log in ``folder/server.log``."""

    ADMIN = "admin"

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        ui: str | None = None,
        template: Path | None = None,
        admin_password: str | None = None,
    ):
        self.folder, self.port, self.ui = folder, port or free_port(), ui
        self.template = template  # a migrated SQLite store to start from (saves ~2 s)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.admin_password = admin_password

    def command(self) -> list[str]:
        where = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        if self.ui:
            return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", self.ui, *where]
        auth = ["--app-name", "basic-auth"] if self.admin_password else []
        return [
            sys.executable, "-m", "mlflow", "server", *where, *auth,
            "--backend-store-uri", f"sqlite:///{self.folder}/server.db",
            "--artifacts-destination", str(self.folder / "server-artifacts"),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        """The server's environment: with basic auth, its user store in ``folder`` (MLflow's
        default is basic_auth.db in the working directory) and the admin's password."""
        env = dict(os.environ)
        if self.admin_password:
            ini = self.folder / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\ndefault_permission = READ\n"
                f"database_uri = sqlite:///{self.folder}/basic_auth.db\n"
                f"admin_username = {self.ADMIN}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            env |= {
                "MLFLOW_AUTH_CONFIG_PATH": str(ini),
                "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
            }
        return env

    def start(self, timeout_s: float = 120) -> MlflowServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.template is not None and not (self.folder / "server.db").exists():
            shutil.copy(self.template, self.folder / "server.db")
        log = self.folder / "server.log" if self.admin_password else Path(os.devnull)
        with open(log, "ab") as out:  # the server keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.environment(),
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
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # seen on 2 cores under a load of 10
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None


class Cut:
    """A TCP relay on 127.0.0.1 in front of a real server: ``cut()`` closes its port and every
    connection through it, so clients find the server gone; ``mend()`` opens the same port
    again. Cheaper than stopping the server and starting it anew (~8 s for mlflow server)."""

    def __init__(self, target_port: int):
        self.target, self.port = target_port, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def mend(self) -> Cut:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept() blocked on it (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def job_processes(procs: list) -> list:
    """Those of ``procs`` (psutil processes) that are the job's: its workers and ranks, not the
    tracking process (loaderbench.tracking_host)."""
    import psutil

    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if "loaderbench.tracking_host" not in " ".join(p.cmdline()):
                out.append(p)
    return out


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
