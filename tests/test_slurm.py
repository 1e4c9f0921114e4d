"""A real cluster on one machine: `scripts/local_cluster.sh up` (single-node Slurm and an
`mlflow server` on 127.0.0.1), a sweep submitted with `hydra/launcher=slurm`, and everything
checked through the server's REST API with MLflow's client. Then a job is `scancel`ed mid-run.
`down` stops what `up` started; nothing is left running."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time

import psutil
import pytest

from loaderbench import keys, store
from tests.helpers import ROOT, free_port, still_running

pytestmark = pytest.mark.slurm
SCRIPT = ROOT / "scripts" / "local_cluster.sh"
CAN_INSTALL = os.geteuid() == 0 and shutil.which("apt-get") is not None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("slurmctld") is None and not CAN_INSTALL:
        pytest.skip("no Slurm, and installing it needs root and apt-get")
    folder = tmp_path_factory.mktemp("cluster")
    port = free_port()
    env = os.environ | {
        "LOADERBENCH_CLUSTER_DIR": str(folder),
        "MLFLOW_PORT": str(port),
        "PYTHON": sys.executable,
        "SLURMCTLD_PORT": str(free_port()),
        "SLURMD_PORT": str(free_port()),
    }
    up = subprocess.run(["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True,
                        timeout=600)  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        env["SLURM_CONF"] = str(folder / "slurm.conf")
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop(keys.PARENT_ENV, None)
        yield {"env": env, "uri": f"http://127.0.0.1:{port}", "folder": folder}
    finally:
        pids = [int(p.read_text()) for p in folder.glob("*.pid")]
        down = subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert down.returncode == 0, down.stdout + down.stderr
        time.sleep(1)
        assert not still_running(pids), "still running after down"
        jobs = [p for p in psutil.process_iter(["cmdline"])
                if "submitit" in " ".join(p.info["cmdline"] or [])]  # fmt: skip
        assert not jobs, "a loaderbench job outlived the cluster"


def sweep(cluster, tmp_path, *overrides: str) -> subprocess.Popen:
    cmd = [
        sys.executable, str(ROOT / "run.py"), "-m", "hydra/launcher=slurm",
        "hydra.launcher.partition=debug", f"hydra.launcher.cpus_per_task={os.cpu_count()}",
        "hydra.launcher.mem_gb=4", "hydra.launcher.timeout_min=20",
        "dataset.image_size=32", "trainer.progress=false",
        f"mlflow.tracking_uri={cluster['uri']}", f"hydra.sweep.dir={tmp_path}/sweep",
        *overrides,
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=tmp_path, env=cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def sweep_of(client, out: str):
    (parent_id,) = set(re.findall(r"parent run ([0-9a-f]{32})", out))
    parent = client.get_run(parent_id)
    return parent, store.child_runs(client, parent)


def test_a_slurm_sweep_records_parent_children_and_report_on_the_server(cluster, tmp_path):
    proc = sweep(cluster, tmp_path, "loader.num_workers=0,2", "dataset.size=256",
                 "dataset.val_size=64", "trainer.epochs=1")  # fmt: skip
    out = proc.communicate(timeout=900)[0]
    print(out[-4000:])
    assert proc.returncode == 0
    assert "Bypassing sacct error" not in out  # explained once instead
    client = store.open_store(cluster["uri"])
    parent, children = sweep_of(client, out)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[keys.LAUNCHER_TAG].endswith("SlurmLauncher")
    assert sorted(c.info.run_name for c in children) == ["w0", "w2"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params[keys.WORKERS_PARAM] in ("0", "2")
        for key in (keys.SUMMARY_SAMPLES_PER_S, keys.SUMMARY_VAL_ACC, keys.PEAK_RSS):
            assert math.isfinite(child.data.metrics[key]), key
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {keys.REPORT_MD, keys.REPORT_CSV, keys.THROUGHPUT_PNG} <= artifacts
    assert parent.data.tags[keys.REPRO_TAG] == "identical"


def test_a_cancelled_job_ends_killed_and_the_sweep_finishes(cluster, tmp_path):
    proc = sweep(cluster, tmp_path, "loader.num_workers=2,0", "dataset.size=4096",
                 "trainer.epochs=4")  # fmt: skip
    client, env = store.open_store(cluster["uri"]), cluster["env"]
    deadline, cancelled = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None and cancelled is None:
        exp = client.get_experiment_by_name("loaderbench")
        query = "attributes.status = 'RUNNING' and tags.`loaderbench.role` = 'job'"
        for run in client.search_runs([exp.experiment_id], query) if exp else []:
            if run.data.metrics:  # mid-run: its first epoch is recorded
                cancelled = run.data.tags[keys.JOB_ID_TAG]  # e.g. 7_0, as scancel takes it
                subprocess.run(["scancel", cancelled], env=env, check=True)
                break
        time.sleep(0.5)
    assert cancelled, "no job was seen running"
    out = proc.communicate(timeout=900)[0]
    print(out[-4000:])
    assert proc.returncode == 1  # one combination did not finish
    assert "Traceback" not in out
    parent, children = sweep_of(client, out)
    assert parent.info.status == "FINISHED"
    assert sorted(c.info.status for c in children) == ["FINISHED", "KILLED"]
    (killed,) = [c for c in children if c.info.status == "KILLED"]
    assert killed.data.tags[keys.KILLED_BY_TAG] == "SIGTERM"
    assert parent.data.metrics[keys.SWEEP_N_FAILED] == 1
    report = store.read_text(client, parent.info.run_id, keys.REPORT_MD)
    assert f"**{killed.info.run_name}**" in report and "stopped by SIGTERM" in report


def test_a_two_rank_job_runs_its_ranks_inside_one_slurm_job(cluster, tmp_path):
    """trainer.ranks=2 under hydra/launcher=slurm: each job of the sweep is one Slurm job on
    one node, whose cpus_per_task (here every core) covers its ranks; the elastic launcher
    starts the ranks inside it and the job's one run is on the server."""
    proc = sweep(cluster, tmp_path, "trainer.ranks=2", "loader.num_workers=0,1",
                 "dataset.size=129", "dataset.val_size=32", "trainer.epochs=1")  # fmt: skip
    out = proc.communicate(timeout=900)[0]
    print(out[-4000:])
    assert proc.returncode == 0
    client = store.open_store(cluster["uri"])
    parent, children = sweep_of(client, out)
    assert sorted(c.info.run_name for c in children) == ["w0", "w1"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["effective.ranks"] == "2"
        assert child.data.params["effective.dist_backend"] == "gloo"
        assert child.data.tags[keys.JOB_ID_TAG]  # a Slurm job, not this process
        assert child.data.tags[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK
        assert child.data.metrics[keys.PADDED_SAMPLES] == 1
        assert {
            "rank/0/data_wait_fraction",
            "rank/1/data_wait_fraction",
        } <= child.data.metrics.keys()
    assert parent.data.tags[keys.REPRO_TAG] == "identical"
