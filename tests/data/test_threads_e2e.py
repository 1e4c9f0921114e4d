"""``loader.backend=threads`` end to end, in subprocesses (issue 26): a sweep over both backends
with identical histories, SIGTERM mid-epoch, and a thread stuck past its job."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from mlflow.tracking import MlflowClient

from loaderbench import keys
from tests.helpers import ROOT, job_env

pytestmark = pytest.mark.slow
TINY = ["dataset.image_size=16", "trainer.progress=false", "loader.batch_size=16"]


def _cli(args: list[str], tmp, uri: str, **kw) -> list[str]:
    return [
        sys.executable, "run.py", *args, *TINY, f"mlflow.tracking_uri={uri}",
        f"hydra.sweep.dir={tmp}/sweep", f"hydra.run.dir={tmp}/run",
    ]  # fmt: skip


def _run(args: list[str], tmp, uri: str, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        _cli(args, tmp, uri), cwd=ROOT, env=job_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    print(proc.stdout[-4000:], proc.stderr[-4000:])  # shown when the test fails
    return proc


def _runs(uri: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("loaderbench")
    runs = client.search_runs([exp.experiment_id], run_view_type=3)
    parents = [r for r in runs if r.data.tags.get(keys.ROLE_TAG) == keys.ROLE_SWEEP]
    return parents, [r for r in runs if keys.PARENT_TAG in r.data.tags] or runs


def test_both_backends_on_a_jpeg_folder_train_identically_and_are_compared(tmp_path):
    from loaderbench.make_imagefolder import main as make_folder

    folder = tmp_path / "jpeg"
    assert make_folder(["--out", str(folder), "--count", "96", "--val-count", "32",
                        "--image-size", "24", "--workers", "1"]) == 0  # fmt: skip
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["-m", "loader.backend=dataloader,threads", "loader.num_workers=2"]
    args += ["transforms=augment", "dataset=imagefolder", f"dataset.root={folder}"]
    args += ["dataset.image_size=16", "trainer.epochs=2"]
    proc = _run(args, tmp_path, uri, timeout=900)
    assert proc.returncode == 0
    (parent,), children = _runs(uri)
    assert sorted(c.info.run_name for c in children) == ["t2", "w2"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK for c in children)
    assert parent.data.tags[keys.REPRO_TAG] == "identical"
    assert {c.data.params[keys.BACKEND_EFFECTIVE] for c in children} == {"dataloader", "threads"}


def test_sigterm_mid_epoch_under_threads_leaves_the_run_killed_and_nothing_running(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["loader.backend=threads", "loader.num_workers=2", "dataset.size=100000"]
    proc = subprocess.Popen(
        _cli(args, tmp_path, uri), cwd=ROOT, env=job_env(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline:  # until the loader threads are up: the epoch has begun
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(proc.pid).num_threads() >= 6:
                break
        time.sleep(0.5)
    time.sleep(2)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    print(out[-4000:])
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in out
    assert out.strip().splitlines()[-1].startswith("interrupted by SIGTERM: run ")
    with contextlib.suppress(ProcessLookupError):  # nothing of its group is left
        os.killpg(proc.pid, 0)
        pytest.fail("a process of the run's group survived")
    _, (run,) = _runs(uri)
    assert run.info.status == "KILLED"
    assert run.data.tags[keys.KILLED_BY_TAG] == "SIGTERM"


def test_a_thread_stuck_past_its_job_ends_the_in_process_sweep_with_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["-m", "seed=0,1", "dataset=custom", "dataset.target=tests.user_datasets.Blocks"]
    args += ["dataset.size=null", "dataset.val_size=8", "loader.backend=threads"]
    args += ["loader.num_workers=1", "loader.timeout=1", "trainer.epochs=1"]
    proc = _run(args, tmp_path, uri, timeout=600)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 loader thread(s) stuck in __getitem__")
    assert "0 of 2 jobs finished" in last
    (parent,), children = _runs(uri)
    assert parent.info.status == "KILLED"
    assert parent.data.tags[keys.KILLED_BY_TAG] == "stuck_loader_thread"
    assert [c.info.status for c in children] == ["FAILED"]  # the second job never started
