"""End-to-end: the README's "Benchmark your own pipeline" commands on the examples/ package,
in a subprocess as a user types them, recorded in a real SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from loaderbench import keys
from tests.helpers import ROOT
from tests.test_sweep_e2e import check_sweep, run_cli

pytestmark = pytest.mark.slow
EXAMPLE = [
    "dataset=custom",
    "dataset.target=mypkg.data.PackedJpegs",
    "+dataset.val_kwargs.split=val",
    "model=custom",
    "model._target_=mypkg.models.Net",
]


@pytest.fixture
def packed(tmp_path, monkeypatch):
    """The example's own files, written by its own script; its package on PYTHONPATH."""
    paths = [str(ROOT / "examples" / "mypkg"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    out = tmp_path / "packed"
    cmd = [sys.executable, "-m", "mypkg.make_data", "--out", str(out), "--count", "160"]
    subprocess.run([*cmd, "--val-count", "48"], check=True, cwd=ROOT)
    return out


def test_the_example_package_over_workers_and_start_methods_trains_identically(
    packed, tmp_path, sqlite_uri
):
    args = ["-m", "loader.num_workers=0,2", "loader.multiprocessing_context=fork,spawn"]
    proc = run_cli([*args, *EXAMPLE, f"+dataset.kwargs.root={packed}"], tmp_path, sqlite_uri)
    assert proc.returncode == 0
    client, parent, children = check_sweep(sqlite_uri, n_finished=4)
    assert parent.data.tags[keys.REPRO_TAG] == "identical"
    accuracies = {c.data.metrics[keys.SUMMARY_VAL_ACC] for c in children}
    assert len(accuracies) == 1
    for child in children:
        assert child.data.params["data.train_size"] == "128"  # TINY's dataset.size: the first 128
        assert child.data.params["data.num_classes"] == "6"  # len(PackedJpegs.classes)
        assert child.data.params["dataset.kwargs.root"] == str(packed)


def test_reproducing_the_example_refuses_its_package_without_trust_and_runs_with_it(
    packed, tmp_path, sqlite_uri
):
    proc = run_cli([*EXAMPLE, f"+dataset.kwargs.root={packed}"], tmp_path, sqlite_uri)
    assert proc.returncode == 0
    client = MlflowClient(tracking_uri=sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("loaderbench").experiment_id])
    cmd = [sys.executable, "-m", "loaderbench.reproduce", run.info.run_id, "--tracking-uri"]
    refused = subprocess.run([*cmd, sqlite_uri], cwd=ROOT, capture_output=True, text=True)
    print(refused.stdout[-3000:], refused.stderr[-3000:], sep="\n")
    assert refused.returncode == 2
    assert "dataset.target=mypkg.data.PackedJpegs" in refused.stderr
    assert "model._target_=mypkg.models.Net" in refused.stderr
    assert len(client.search_runs([run.info.experiment_id])) == 1  # nothing ran
    trusted = subprocess.run(
        [*cmd, sqlite_uri, "--trust"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    print(trusted.stdout[-3000:], trusted.stderr[-3000:], sep="\n")
    assert trusted.returncode == 0 and trusted.stdout.rstrip().endswith("match")


def test_an_open_file_under_spawn_fails_with_one_line(tmp_path, sqlite_uri):
    handle = tmp_path / "records.bin"
    handle.write_bytes(b"x")
    args = [
        "dataset=custom",
        "dataset.target=tests.user_datasets.HoldsFile",
        f"+dataset.kwargs.path={handle}",
        "+dataset.kwargs.n=400",
        "loader.num_workers=2",
        "loader.multiprocessing_context=spawn",
    ]
    proc = run_cli(args, tmp_path, sqlite_uri)
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr  # the log goes to stdout
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "HoldsFile.handle is an open file" in errors[0]
    assert "Traceback" not in output


def test_bench_predict_quick_runs_end_to_end(tmp_path):
    """The script the lead runs for the figures: here only that it runs and says something for
    every setting (its figures are timings: no threshold)."""
    cmd = [sys.executable, "scripts/bench_predict.py", "--quick", "--only", "tensor"]
    proc = subprocess.run(
        [*cmd, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
    assert proc.returncode == 0
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("  loader.")]
    assert len(rows) == 2  # --quick: num_workers 0 and 2, fork
    for row in rows:
        assert "%" in row  # predicted against a measured training run: an error is printed
    assert "largest relative error:" in proc.stdout
