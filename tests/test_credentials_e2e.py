"""A tracking server that asks for credentials (MLflow's own ``--app-name basic-auth``), in
subprocesses as a user types the commands: without them one line and exit 2 before any job,
with MLflow's variables the runs record, a password in the URI refused before Hydra writes
anything, and no password anywhere afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, MlflowServer, job_env

pytestmark = pytest.mark.slow
PASSWORD = "Loaderbench-Pw-1234"  # basic-auth wants 12 characters or more
TINY = [
    "dataset.size=64",
    "dataset.val_size=32",
    "dataset.image_size=16",
    "trainer.epochs=1",
    "trainer.progress=false",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("auth") / "server", admin_password=PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _env(**extra: str) -> dict[str, str]:
    """This process's credentials never reach the job; the test's own (``extra``) do."""
    credentials = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    return {k: v for k, v in job_env().items() if k not in credentials} | extra


OUTPUTS: list[str] = []  # every line any command printed: grepped for the password at the end


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args, *TINY],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    OUTPUTS.append(proc.stdout + proc.stderr)
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return proc


def _lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]


def _runs(server: MlflowServer) -> list:
    os.environ |= {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD}
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=server.url)
        ids = [e.experiment_id for e in client.search_experiments()]
        return list(client.search_runs(ids)) if ids else []
    finally:
        for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(var, None)


def test_a_locked_server_says_so_records_with_the_variables_and_keeps_no_password(server, tmp_path):
    uri = f"mlflow.tracking_uri={server.url}"
    for sweep in ([], ["-m", "loader.num_workers=0,1"]):
        where = tmp_path / f"none{len(sweep)}"
        proc = _run([*sweep, uri, f"hydra.run.dir={where}/run", f"hydra.sweep.dir={where}/sweep"],
                    tmp_path, _env())  # fmt: skip
        lines = _lines(proc)
        assert proc.returncode == 2, lines
        assert len(lines) == 1 and lines[0].startswith(f"error: {uri}: the tracking server asks")
        assert (
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
            in (lines[0])
        )
        assert not list(where.glob("sweep/[0-9]*")), "a job of the sweep started"
    wrong = _env(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="not-the-password")
    proc = _run([uri, f"hydra.run.dir={tmp_path}/wrong"], tmp_path, wrong)
    assert proc.returncode == 2 and len(_lines(proc)) == 1 and "rejected" in _lines(proc)[0]
    assert _runs(server) == []  # nothing was recorded

    right = _env(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=PASSWORD)
    assert _run([uri, f"hydra.run.dir={tmp_path}/one"], tmp_path, right).returncode == 0
    sweep = ["-m", "loader.num_workers=0,1", uri, f"hydra.sweep.dir={tmp_path}/sweep"]
    assert _run(sweep, tmp_path, right).returncode == 0
    runs = _runs(server)
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4  # a run, a parent, two jobs

    in_uri = server.url.replace("http://", f"http://admin:{PASSWORD}@")
    for args, env in (
        ([f"mlflow.tracking_uri={in_uri}"], _env()),
        (["-m", "seed=0,1"], _env(MLFLOW_TRACKING_URI=in_uri)),
    ):
        where = tmp_path / "refused"
        proc = _run([*args, f"hydra.run.dir={where}", f"hydra.sweep.dir={where}"], tmp_path, env)
        lines = _lines(proc)
        assert proc.returncode == 2 and len(lines) == 1, lines
        assert "holds credentials" in lines[0] and "MLFLOW_TRACKING_PASSWORD" in lines[0]
        assert not where.exists()  # Hydra wrote nothing: no .hydra/overrides.yaml
    assert len(_runs(server)) == 4

    # the store, the artifacts, the job folders, Hydra's and loaderbench's logs, the output
    secret = PASSWORD.encode()
    for folder in (tmp_path, server.folder):
        for path in (p for p in folder.rglob("*") if p.is_file()):
            assert secret not in path.read_bytes(), path
    assert not any(PASSWORD in out for out in OUTPUTS)
    for run in runs:
        assert not any(
            PASSWORD in str(v) for v in (*run.data.params.values(), *run.data.tags.values())
        )
