"""Faults end to end, in subprocesses: parallel first use of a new store, a bad tracking URI,
a run with a relative path reproduced from another directory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT, job_env

pytestmark = pytest.mark.slow
TINY = [
    "dataset.size=128",
    "dataset.val_size=32",
    "dataset.image_size=16",
    "trainer.epochs=1",
    "trainer.progress=false",
]


def test_three_runs_at_once_on_a_new_store_all_record(tmp_path):
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"  # neither the file nor its folder exists yet
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "run.py"),
                *TINY,
                f"seed={i}",
                f"mlflow.tracking_uri={uri}",
                f"hydra.run.dir={tmp_path}/run{i}",
            ],
            cwd=tmp_path,
            env=job_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(3)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("loaderbench")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3


@pytest.mark.parametrize(
    ("uri", "multirun"),
    [
        ("bogus://x", False),
        ("mlruns", False),
        ("bogus://x", True),
        ("http://127.0.0.1:9", False),  # nothing listens there: no server to reach
        ("http://127.0.0.1:9", True),
    ],
)
def test_a_bad_tracking_uri_is_one_line_naming_the_key(tmp_path, uri, multirun):
    sweep = ["-m", "loader.num_workers=0,2"] if multirun else []
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *sweep, *TINY, f"mlflow.tracking_uri={uri}",
         f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path, env=job_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: mlflow.tracking_uri=")
    assert "sqlite:///" in lines[0]


def test_a_relative_root_reproduces_from_another_directory(tmp_path):
    from PIL import Image

    launch, elsewhere = tmp_path / "launch", tmp_path / "elsewhere"
    for split in ("train", "val"):
        for k, cls in enumerate(("a", "b")):
            folder = launch / "imgs" / split / cls
            folder.mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (16, 16), (120 * k, 20 * i, 60)).save(folder / f"{i}.png")
    elsewhere.mkdir()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "dataset=imagefolder", "dataset.root=imgs",
         "dataset.image_size=16", "trainer.epochs=1", "trainer.progress=false",
         "loader.batch_size=4", f"mlflow.tracking_uri={uri}", f"hydra.run.dir={tmp_path}/run"],
        cwd=launch, env=job_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("loaderbench").experiment_id])
    assert run.data.params["dataset.root"] == str(launch / "imgs")
    assert run.data.params["given.dataset.root"] == "imgs"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reproduce.py"), run.info.run_id,
         "--tracking-uri", uri],
        cwd=elsewhere, env=job_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.rstrip().endswith("match")


def _can_unshare() -> bool:
    try:
        done = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def test_a_small_dev_shm_gets_its_cause_and_fix_and_the_fix_runs(tmp_path):
    if not _can_unshare():
        pytest.skip("unshare -m is not allowed here (needs root or user namespaces)")
    run = [sys.executable, str(ROOT / "run.py"), "dataset=tensor", "dataset.size=256",
           "dataset.val_size=64", "dataset.image_size=224", "transforms=none",
           "bench.mode=loader_only", "trainer.epochs=1", "trainer.progress=false",
           "mlflow.enabled=false", f"hydra.run.dir={tmp_path}/run"]  # fmt: skip

    def in_small_shm(*overrides: str) -> subprocess.CompletedProcess:
        script = 'mount -t tmpfs -o size=16m tmpfs /dev/shm && exec "$@"'
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", script, "sh", *run, *overrides],
            cwd=tmp_path, env=job_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    failed = in_small_shm("loader.num_workers=2")  # 2 x 2 batches of 37 MB for 16 MB
    out = failed.stdout + failed.stderr
    assert failed.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    assert "shared memory: 2 workers x prefetch_factor 2" in out  # the warning, before
    error = next(line for line in out.splitlines() if line.startswith("error: "))
    assert "out of shared memory" in error and "holds 16 MB" in error
    assert "--shm-size" in error and "loader.num_workers=0" in error
    fix = error.split("loader.batch_size=")[1].split(" ")[0]  # the batch size that fits
    fixed = in_small_shm("loader.num_workers=2", f"loader.batch_size={fix}")
    assert fixed.returncode == 0, (fixed.stdout + fixed.stderr)[-3000:]
