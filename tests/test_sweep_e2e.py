"""End-to-end: `python run.py` in a subprocess, exactly as a user types it, against a real
SQLite store or a real `mlflow server` on 127.0.0.1; checked with MLflow's own client."""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from loaderbench import keys
from tests.helpers import ROOT, SMALL, job_env, job_processes, run_mid_epoch, still_running

TINY = [
    "dataset.size=128",
    "dataset.val_size=32",
    "dataset.image_size=32",
    "trainer.epochs=1",
    "loader.batch_size=32",
]
pytestmark = pytest.mark.slow


def run_cli(
    args: list[str], tmp: Path, uri: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    env = job_env()
    cmd = [
        sys.executable,
        "run.py",
        *args,
        *TINY,
        f"mlflow.tracking_uri={uri}",
        f"hydra.sweep.dir={tmp}/sweep",
        f"hydra.run.dir={tmp}/run",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")  # shown when a test fails
    return proc


def sweep_runs(uri: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("loaderbench")
    runs = client.search_runs([exp.experiment_id], run_view_type=3)
    parents = [r for r in runs if r.data.tags.get("loaderbench.role") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def check_sweep(uri: str, n_finished: int, n_failed: int = 0):
    client, parents, children = sweep_runs(uri)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    statuses = sorted(c.info.status for c in children)
    assert statuses == sorted(["FINISHED"] * n_finished + ["FAILED"] * n_failed)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "report.csv"} <= artifacts
    assert any(p.endswith(".png") for p in artifacts)
    assert parent.data.metrics["sweep/n_runs"] == n_finished + n_failed
    assert parent.data.metrics["sweep/n_failed"] == n_failed
    verdict = parent.data.tags["loaderbench.verdict"]
    assert verdict.startswith(("Fastest", "No significant difference", "No difference"))
    names = {c.info.run_name for c in children}
    assert parent.data.tags["loaderbench.winner"] in names | {"none"}
    note = parent.data.tags["mlflow.note.content"]  # the description the MLflow UI shows
    assert verdict in note and "DataLoader(" in note
    for child in children:  # named by the swept values only
        assert 0 < len(child.info.run_name) <= 40 and "=" not in child.info.run_name
    return client, parent, children


def test_basic_launcher_sweep(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_cli(["-m", "loader.num_workers=0,2"], tmp_path, uri)
    assert proc.returncode == 0
    client, parent, children = check_sweep(uri, n_finished=2)
    assert sorted(c.data.params["loader.num_workers"] for c in children) == ["0", "2"]
    assert sorted(c.info.run_name for c in children) == ["w0", "w2"]
    assert (tmp_path / "sweep" / "report.md").exists()
    assert "Verdict" in proc.stdout
    # identical accuracy whatever the loader settings
    assert len({c.data.metrics["summary/val_acc"] for c in children}) == 1


def test_an_ignored_knob_has_no_winner_and_names_hold_only_what_was_swept(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_cli(["-m", "loader.pin_memory=false,true", "dataset=tensor"], tmp_path, uri)
    assert proc.returncode == 0
    client, parent, children = check_sweep(uri, n_finished=2)
    assert sorted(c.info.run_name for c in children) == ["nopin", "pin"]
    assert parent.data.tags["loaderbench.winner"] == "none"  # torch ignores pinning on CPU
    assert parent.data.tags["loaderbench.verdict"].startswith("No difference")
    # the constants live on the parent, as params
    assert parent.data.params["dataset.name"] == "tensor"
    assert f"dataset.size={parent.data.params['dataset.size']}" in TINY
    assert "loader.pin_memory" not in parent.data.params


def test_failed_combination_is_recorded_and_sweep_goes_on(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_cli(["-m", "loader.num_workers=0,-1,2"], tmp_path, uri)
    assert proc.returncode != 0
    assert "1 combination(s) did not finish: w-1. A failed one has error.txt" in (
        proc.stdout + proc.stderr
    )
    client, parent, children = check_sweep(uri, n_finished=2, n_failed=1)
    (failed,) = [c for c in children if c.info.status == "FAILED"]
    assert failed.data.params["loader.num_workers"] == "-1"
    assert "error.txt" in {a.path for a in client.list_artifacts(failed.info.run_id)}
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "FAILED" in report and "loader.num_workers=-1" in report


def test_tune_probes_confirms_records_a_crashed_trial_and_leaves_batch_size_alone(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["sweep=tune", "tune.max_workers=1", "tune.probe_batches=4"]  # 1 epoch of 4 batches
    # processes only, and no cost cap: a grid of 5 runs leaves a capped search nothing to probe
    args += ["tune.backends=false", "tune.cost_share=null"]
    # a context this platform lacks: that trial fails, the search goes on
    proc = run_cli([*args, "tune.contexts=[fork,nonesuch]"], tmp_path, uri)
    assert proc.returncode == 1  # a trial did not finish, and the end says which
    n = len(sweep_runs(uri)[2])
    client, parent, children = check_sweep(uri, n_finished=n - 1, n_failed=1)
    (failed,) = [c for c in children if c.info.status == "FAILED"]
    assert failed.data.params["loader.multiprocessing_context"] == "nonesuch"
    # its prefetch is whichever the measured prefetch stage kept: the name says it
    assert re.fullmatch(r"w1-nonesuch-nopersist-pf\d+-probe4", failed.info.run_name)
    assert f"did not finish: {failed.info.run_name}" in proc.stdout + proc.stderr
    probes = [c for c in children if c.data.params[keys.PROBE_PARAM] == "4"]
    full = [c for c in children if c.data.params[keys.PROBE_PARAM] == "null"]
    for c in probes:
        if c.info.status == "FINISHED":
            assert math.isfinite(c.data.metrics[keys.SUMMARY_PROJECTED])
            assert math.isfinite(c.data.metrics[keys.SUMMARY_VAL_ACC])  # of its cut epochs
    assert len(full) >= 2 and all(c.info.status == "FINISHED" for c in full)
    assert {c.data.params["loader.num_workers"] for c in full} == {"0", "1"}
    assert len({c.data.metrics[keys.SUMMARY_VAL_ACC] for c in full}) == 1
    assert parent.data.tags[keys.REPRO_TAG] == "identical"  # full runs, same training
    assert {c.data.params["loader.batch_size"] for c in children} == {"32"}  # not tuned
    m = parent.data.metrics
    assert (m[keys.TUNE_TRIALS], m[keys.TUNE_PROBES]) == (n, len(probes))
    assert m[keys.TUNE_WALL] > 0
    assert parent.data.tags[keys.RECOMMENDATION_TAG].startswith("DataLoader(dataset, ")
    assert "Tuned in" in parent.data.tags["mlflow.note.content"]
    assert keys.TRIALS_PNG in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert parent.data.tags[keys.RECOMMENDATION_TAG] in proc.stdout + proc.stderr  # printed


def test_submitit_local_launcher_gives_the_same_structure(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_cli(["-m", "hydra/launcher=submitit_local", "loader.num_workers=0,2"], tmp_path, uri)
    assert proc.returncode == 0
    check_sweep(uri, n_finished=2)


def test_sweep_against_a_real_mlflow_server(tmp_path, mlflow_server):
    proc = run_cli(["-m", "loader.num_workers=0,2"], tmp_path, mlflow_server)
    assert proc.returncode == 0
    check_sweep(mlflow_server, n_finished=2)


def test_report_from_the_store_alone(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert run_cli(["-m", "loader.num_workers=0,1"], tmp_path, uri).returncode == 0
    _, (parent,), children = sweep_runs(uri)
    (tmp_path / "sweep" / "report.md").unlink()  # nothing left but the store
    out = tmp_path / "again"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/report.py",
            "--tracking-uri",
            uri,
            "--out",
            str(out),
            "--no-publish",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    for child in children:
        assert child.info.run_name in report
    assert parent.data.tags["loaderbench.verdict"] in report


@pytest.mark.parametrize(
    "override",
    ["loader.num_workers=-1", "device=cuda", "dataset.num_classes=1", "trainer.ranks=0"],
)
def test_single_run_bad_input_fails_fast_with_one_line(tmp_path, override):
    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("there is a CUDA device here")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_cli([override], tmp_path, uri, timeout=120)
    assert proc.returncode == 2
    key = override.split("=")[0]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0]
    if (tmp_path / "mlflow.db").exists():
        _, parents, children = sweep_runs(uri)
        assert not parents and not children


@pytest.mark.parametrize(
    ("signum", "whom"),
    [
        (signal.SIGINT, "group"),  # Ctrl-C: the terminal signals the whole foreground group
        (signal.SIGTERM, "main"),  # kill PID, or a scheduler stopping the job
    ],
)
def test_a_stop_signal_leaves_runs_killed_no_workers_and_no_traceback(tmp_path, signum, whom):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = job_env()
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        "loader.num_workers=2,1",
        "dataset.size=100000",
        "dataset.image_size=32",
        "trainer.progress=false",
        f"mlflow.tracking_uri={uri}",
        f"hydra.sweep.dir={tmp_path}/sweep",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tree: set[int] = set()
    deadline = time.time() + 180
    while time.time() < deadline:  # wait until the first job's workers are busy
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        tree |= {k.pid for k in kids}
        if len(job_processes(kids)) >= 2:  # the job's two workers (not the tracking process)
            time.sleep(2)
            break
        time.sleep(0.5)
    tree |= {k.pid for k in psutil.Process(proc.pid).children(recursive=True)}
    if whom == "group":
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    out, _ = proc.communicate(timeout=120)
    print(out[-4000:])
    assert proc.returncode == 128 + signum
    assert "Traceback" not in out
    name = signal.Signals(signum).name
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"interrupted by {name}: run ") and "marked KILLED; 0 of 2 jobs" in line
    time.sleep(1)
    assert not still_running(tree)
    with contextlib.suppress(ProcessLookupError):  # nothing of the group is left running
        os.killpg(proc.pid, 0)
        pytest.fail("a process of the sweep's group survived")
    _, parents, children = sweep_runs(uri)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert [c.info.status for c in children] == ["KILLED"]  # the second job never started
    assert children[0].data.tags["loaderbench.killed_by"] == name
    assert parents[0].data.tags["loaderbench.killed_by"] == name


def test_a_launched_job_stopped_by_sigterm_is_killed_and_the_sweep_goes_on(tmp_path):
    """scancel and Slurm's preemption send SIGTERM to the job (then SIGKILL after a grace
    period); submitit ignores it in its jobs. Here with submitit_local, whose jobs are the same
    submitit job processes: one job gets SIGTERM mid-epoch."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = job_env()
    cmd = [
        sys.executable, "run.py", "-m", "hydra/launcher=submitit_local",
        "loader.num_workers=2,0", "dataset.size=4096", "dataset.image_size=32",
        "trainer.epochs=4", "trainer.progress=false",
        f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seen: set[int] = set()

    def gather() -> None:
        with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
            seen.update(k.pid for k in psutil.Process(proc.pid).children(recursive=True))

    query = "tags.`mlflow.parentRunId` != '' and attributes.status = 'RUNNING'"
    run = run_mid_epoch(uri, proc, query, each=gather)
    job = None if run is None else int(run.data.tags[keys.JOB_ID_TAG])  # submitit_local: its pid
    assert job is not None, "no job was seen running"
    os.kill(job, signal.SIGTERM)  # as Slurm signals a job: submitit forwards it to the task
    out, _ = proc.communicate(timeout=600)
    print(out[-4000:])
    assert proc.returncode == 1  # a combination did not finish: said at the very end
    assert "Traceback" not in out
    _, (parent,), children = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert sorted(c.info.status for c in children) == ["FINISHED", "KILLED"]
    (killed,) = [c for c in children if c.info.status == "KILLED"]
    assert killed.data.tags["loaderbench.killed_by"] == "SIGTERM"
    assert parent.data.metrics["sweep/n_failed"] == 1
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert killed.info.run_name in report and "KILLED): stopped by SIGTERM" in report
    assert f"did not finish: {killed.info.run_name} (KILLED)" in out
    time.sleep(1)
    assert not still_running(seen)  # the killed job's workers were joined, nothing else is left


def test_a_sweep_over_a_config_group_names_each_run_by_its_option(tmp_path):
    """`-m transforms=none,basic`: the group's options carry no `name`, and each child is
    named by the option Hydra chose, not after the group."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = job_env()
    cmd = [
        sys.executable, "run.py", "-m", "transforms=none,basic", *SMALL,
        f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")  # shown when the test fails
    assert proc.returncode == 0
    client, parent, children = check_sweep(uri, n_finished=2)
    assert sorted(c.info.run_name for c in children) == ["basic", "none"]
    assert parent.data.tags["loaderbench.winner"] in {"basic", "none"}
    verdict = parent.data.tags["loaderbench.verdict"]
    if verdict.startswith("Fastest"):  # it names the two settings by their options
        assert "basic" in verdict and "none" in verdict
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "| none |" in report and "| basic |" in report  # a row each, by name
