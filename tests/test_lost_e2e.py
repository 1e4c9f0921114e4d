"""A sweep killed with SIGKILL (as the OOM killer or a dead node ends it) leaves its job's run
and its parent RUNNING: ``doctor --dry-run`` lists them and changes nothing, the next run on
the same store and host ends them KILLED as lost, and the report rebuilds from what finished."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from loaderbench import keys, store
from tests.helpers import ROOT, job_env, run_mid_epoch

pytestmark = pytest.mark.slow
TINY = [
    "dataset.size=128",
    "dataset.val_size=32",
    "dataset.image_size=16",
    "trainer.progress=false",
]


def _python(args: list[str], cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=job_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return proc


def test_a_sweep_killed_by_sigkill_is_found_lost_by_the_next_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # the first job finishes; the second trains long enough to be killed mid-run
    sweep = [
        str(ROOT / "run.py"), "-m", "trainer.epochs=1,1000", *TINY,
        f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, *sweep], cwd=tmp_path, env=job_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    query = "params.`trainer.epochs` = '1000' and attributes.status = 'RUNNING'"
    victim = run_mid_epoch(uri, proc, query)
    assert victim is not None, "the long job was never seen running"
    client = store.open_store(uri)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    parent_id = victim.data.tags[keys.PARENT_TAG]
    assert victim.data.tags[keys.PID_TAG] == str(proc.pid)
    assert victim.data.tags[keys.HOST_TAG] == socket.gethostname()

    doctor = _python(["-m", "loaderbench.doctor", "--tracking-uri", uri, "--dry-run"], tmp_path)
    assert doctor.returncode == 0
    assert f"would mark KILLED: run {victim.info.run_id}" in doctor.stdout
    assert f"would mark KILLED: sweep {parent_id}" in doctor.stdout
    assert f"process {proc.pid} on {socket.gethostname()} is gone" in doctor.stdout
    for run_id in (victim.info.run_id, parent_id):
        assert client.get_run(run_id).info.status == "RUNNING"  # a dry run changes nothing

    args = [str(ROOT / "run.py"), *TINY, "trainer.epochs=1", f"mlflow.tracking_uri={uri}"]
    nxt = _python([*args, f"hydra.run.dir={tmp_path}/next"], tmp_path)
    assert nxt.returncode == 0
    assert "left RUNNING by a dead process ended KILLED" in nxt.stdout + nxt.stderr
    for run_id in (victim.info.run_id, parent_id):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags[keys.KILLED_BY_TAG] == "lost"
        reason = run.data.tags[keys.LOST_REASON_TAG]
        assert reason.startswith(f"process {proc.pid} on {socket.gethostname()} is gone")

    report = _python(
        ["-m", "loaderbench.report", parent_id, "--tracking-uri", uri, "--out", "report"], tmp_path
    )
    assert report.returncode == 0
    assert f"{victim.info.run_name}** (`{victim.info.run_id}`, KILLED): lost: process" in (
        report.stdout
    )
    parent = client.get_run(parent_id)
    assert parent.data.metrics[keys.SWEEP_N_RUNS] == 2
    assert parent.data.metrics[keys.SWEEP_N_FAILED] == 1
