"""The report read from, and published to, a real (temporary) SQLite MLflow store; the rules
themselves are tested in memory in test_report_analysis.py."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import pytest

from loaderbench import keys, report, store
from loaderbench.report import RunRow
from tests.helpers import ERROR, SUMMARY, basic_sweep, child, load_script, traceback_of


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> str:
    # One database for the module (a copy of the migrated template), one experiment per test.
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def exp(store_uri: str, request: pytest.FixtureRequest) -> tuple[Any, str]:
    return store.open_experiment(store_uri, request.node.name)


_clock = [1_700_000_000_000]


def _start() -> int:
    _clock[0] += 1000  # explicit, increasing start times: the report orders runs by them
    return _clock[0]


def make_sweep(client: Any, exp_id: str, children: list[RunRow], name: str = "sweep") -> str:
    """Record ``children`` as a sweep: params, summary metrics, histories, error.txt."""
    tags = {keys.ROLE_TAG: keys.ROLE_SWEEP}
    parent = client.create_run(exp_id, _start(), tags, run_name=name).info.run_id
    for c in children:
        tags = {keys.PARENT_TAG: parent, keys.ROLE_TAG: keys.ROLE_JOB}
        run_id = client.create_run(exp_id, _start(), tags, run_name=c.name).info.run_id
        for key, value in c.params.items():
            client.log_param(run_id, key, value)
        for key, value in c.metrics.items():
            client.log_metric(run_id, key, value)
        for key, history in c.histories.items():
            for step, value in enumerate(history):
                client.log_metric(run_id, key, value, step=step)
        if c.error:
            client.log_text(run_id, traceback_of(c.error), keys.ERROR_ARTIFACT)
        if c.status != "RUNNING":
            client.set_terminated(run_id, c.status)
    client.set_terminated(parent, "FINISHED")
    return parent


def test_rows_read_back_as_recorded(exp: tuple[Any, str]) -> None:
    client, exp_id = exp
    children = [*basic_sweep(), child("w8-fork-bs64", status="KILLED")]
    name, rows, _ = report.load_sweep(client, make_sweep(client, exp_id, children, name="rows"))
    assert name == "rows"
    assert [r.name for r in rows] == [c.name for c in children]  # start order
    for row, c in zip(rows, children, strict=True):
        assert (row.status, row.params) == (c.status, c.params)
        assert c.metrics.items() <= row.metrics.items()  # with the histories' latest values
        assert row.histories == c.histories
        assert row.error == c.error  # the exception line of error.txt; None without one


def test_a_step_logged_twice_reads_as_its_last_value(exp: tuple[Any, str]) -> None:
    client, exp_id = exp
    parent = make_sweep(client, exp_id, [child("w0-bs64", 1.0)])
    (row,) = report.load_sweep(client, parent)[1]
    client.log_metric(row.run_id, keys.LOSS_TRAIN, 9.0, timestamp=2**41, step=1)
    (row,) = report.load_sweep(client, parent)[1]
    assert row.histories[keys.LOSS_TRAIN] == [1.25, 9.0, 0.5]


def test_report_files_verdict_table_and_csv(exp: tuple[Any, str], tmp_path: Path) -> None:
    client, exp_id = exp
    children = basic_sweep()
    parent = make_sweep(client, exp_id, children, name="workers-sweep")
    res = report.write_report(parent, client, tmp_path / "out")

    # w0 ran with context "null": a setting that does nothing without workers, so it matches.
    ratio = 1234.5678901234 / 667.25
    assert res.verdict.startswith("Fastest: w4-fork-bs64 at 1235 samples/s (95% interval ")
    assert f"{ratio:.2f}× the matching num_workers=0 run (w0-bs64, 667 samples/s;" in res.verdict
    assert res.best_samples_per_s == 1234.5678901234
    assert (res.n_runs, res.n_failed) == (5, 1)
    assert res.varied == ["loader.multiprocessing_context", "loader.num_workers"]

    md = res.markdown_path.read_text(encoding="utf-8")
    assert md.startswith("# Sweep report: workers-sweep")
    assert res.verdict in md and md.strip() == res.markdown.strip()
    failed_row = next(line for line in md.splitlines() if line.startswith("| w4-spawn-bs64 |"))
    assert f"FAILED: {ERROR}" in failed_row
    assert "## Failures" in md and "effective.num_workers" not in md
    assert "| 1235 | 1312 | 0.0123 | 25.0% | 512 | 75.0% |" in md  # display formats only
    assert "⚠" not in md and res.reproducibility == "identical"

    for png in res.plot_paths:
        assert png.name in ("throughput.png", "stall.png")
        assert png.read_bytes().startswith(b"\x89PNG")
    with res.csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run_name"] for r in rows] == [c.name for c in children]
    for row, c in zip(rows, children, strict=True):
        assert row["loader.num_workers"] == c.params["loader.num_workers"]
        for key in SUMMARY:
            if key not in c.metrics:
                assert row[key] == ""  # a failed run logged no metrics
            else:
                assert row[key] == repr(c.metrics[key]) and float(row[key]) == c.metrics[key]
    assert rows[-1]["status"] == "FAILED" and "exited unexpectedly" in rows[-1]["error"]


def test_publish_report_puts_artifacts_metrics_and_tags_on_parent(
    exp: tuple[Any, str], tmp_path: Path
) -> None:
    client, exp_id = exp
    parent = make_sweep(client, exp_id, basic_sweep())
    res = report.write_report(parent, client, tmp_path)
    report.publish_report(parent, client, res)

    run = client.get_run(parent)
    assert {a.path for a in client.list_artifacts(parent)} == {
        "report.md",
        "report.csv",
        "throughput.png",
        "stall.png",
    }
    assert run.data.metrics[keys.SWEEP_N_RUNS] == 5
    assert run.data.metrics[keys.SWEEP_N_FAILED] == 1
    assert run.data.metrics[keys.SWEEP_BEST] == 1234.5678901234
    assert run.data.tags[keys.VERDICT_TAG] == res.verdict
    assert run.data.tags[keys.REPRO_TAG] == "identical"
    assert run.data.tags[keys.WINNER_TAG] == "w4-fork-bs64"
    note = run.data.tags[keys.NOTE_TAG]  # the description the MLflow UI shows
    assert res.verdict in note and "DataLoader(dataset, num_workers=4" in note
    assert "| w0-bs64 |" in note


def test_latest_sweep_and_bad_run_ids(exp: tuple[Any, str]) -> None:
    client, exp_id = exp
    make_sweep(client, exp_id, [child("w0-bs64", 1.0)])
    latest = make_sweep(client, exp_id, [child("w0-bs64", 2.0)])
    assert store.latest_sweep(client) == latest
    job = report.load_sweep(client, latest)[1][0].run_id
    with pytest.raises(report.SweepNotFound, match="not a sweep parent"):
        report.load_sweep(client, job)
    with pytest.raises(report.SweepNotFound, match="not found"):
        report.load_sweep(client, "0" * 32)


def test_cli_exit_codes(exp: tuple[Any, str], store_uri: str, tmp_path: Path, capsys) -> None:
    cli = load_script("report")
    client, exp_id = exp
    parent = make_sweep(client, exp_id, [child("w0-bs64", 5.0), child("w2-fork-bs64", 10.0)])
    argv = ["--tracking-uri", store_uri, "--out", str(tmp_path), "--no-publish"]
    assert cli.main([parent, *argv]) == 0
    assert "# Sweep report" in capsys.readouterr().out and (tmp_path / "report.md").exists()
    assert keys.VERDICT_TAG not in client.get_run(parent).data.tags  # --no-publish
    assert cli.main(["f" * 32, *argv]) == 1
    assert "not found" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    assert cli.main(["--tracking-uri", missing, "--out", str(tmp_path)]) == 1
    assert "no tracking store" in capsys.readouterr().err
    assert not (tmp_path / "nowhere.db").exists()
