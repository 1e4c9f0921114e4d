"""The sweep report against a real (temporary) SQLite MLflow store and synthetic sweeps."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from loaderbench import keys, report
from loaderbench import store as t

LOSS = [1.25, 0.75, 0.5]
ACC = [0.5, 0.625, 0.75]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    # One database for the module: the first use of a SQLite store runs its migrations (~seconds).
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


@pytest.fixture
def exp(store: str, request: pytest.FixtureRequest) -> tuple[Any, str]:
    return t.open_experiment(store, request.node.name)


_clock = [1_700_000_000_000]


def _start() -> int:
    _clock[0] += 1000  # explicit, increasing start times: the report orders runs by them
    return _clock[0]


def child(name: str, sps: float | None = None, status: str = "FINISHED", **kw: Any) -> dict:
    workers = name.split("-")[0][1:]
    params = {
        "dataset.name": "shapes",
        "bench.mode": "train",
        "loader.num_workers": workers,
        "loader.multiprocessing_context": "null" if workers == "0" else "fork",
        "effective.num_workers": workers,
        "data.fingerprint": "abc123",
    }
    params |= kw.pop("params", {})
    metrics = {
        keys.SUMMARY_SAMPLES_PER_S: sps,
        keys.SUMMARY_STEADY: None if sps is None else sps * 1.0625,
        keys.SUMMARY_FIRST_BATCH: 0.0123456,
        keys.SUMMARY_DATA_WAIT: 0.25,
        keys.PEAK_RSS: 512.5,
        keys.SUMMARY_VAL_ACC: 0.75,
    }
    loss, acc = kw.pop("loss", LOSS), kw.pop("acc", ACC)
    return dict(name=name, status=status, params=params, metrics=metrics, loss=loss, acc=acc, **kw)


def make_sweep(client: Any, exp_id: str, children: list[dict], name: str = "sweep") -> str:
    parent = client.create_run(
        exp_id, _start(), {keys.ROLE_TAG: "sweep"}, run_name=name
    ).info.run_id
    for c in children:
        tags = {keys.PARENT_TAG: parent, keys.ROLE_TAG: "job"}
        run_id = client.create_run(exp_id, _start(), tags, run_name=c["name"]).info.run_id
        for key, value in c["params"].items():
            client.log_param(run_id, key, value)
        if c["status"] == "FINISHED":
            for key, value in c["metrics"].items():
                if value is not None:
                    client.log_metric(run_id, key, value)
            if c["params"]["bench.mode"] == "train":
                for step, (loss, acc) in enumerate(zip(c["loss"], c["acc"], strict=True)):
                    client.log_metric(run_id, keys.LOSS_TRAIN, loss, step=step)
                    client.log_metric(run_id, keys.ACC_VAL, acc, step=step)
        if c.get("error"):
            client.log_text(run_id, c["error"], "error.txt")
        if c["status"] != "RUNNING":
            client.set_terminated(run_id, c["status"])
    client.set_terminated(parent, "FINISHED")
    return parent


TRACEBACK = """Traceback (most recent call last):
  File "loaderbench/experiment.py", line 250, in run
    epochs = train(setup, cfg, tracker)
RuntimeError: DataLoader worker (pid 4242) exited unexpectedly
"""


def basic_sweep() -> list[dict]:
    spawn = {"params": {"loader.multiprocessing_context": "spawn"}}
    return [
        child("w0-bs64", 667.25),
        child("w2-fork-bs64", 1001.125),
        child("w2-spawn-bs64", 900.5, **spawn),
        child("w4-fork-bs64", 1234.5678901234),
        child("w4-spawn-bs64", status="FAILED", error=TRACEBACK, **spawn),
    ]


def test_report_files_verdict_table_and_csv(exp: tuple[Any, str], tmp_path: Path) -> None:
    client, exp_id = exp
    children = basic_sweep()
    parent = make_sweep(client, exp_id, children, name="workers-sweep")
    res = report.write_report(parent, client, tmp_path / "out")

    # w0 ran with context "null": a setting that does nothing without workers, so it matches.
    ratio = 1234.5678901234 / 667.25
    assert res.verdict == (
        f"Fastest: w4-fork-bs64 at 1235 samples/s, {ratio:.2f}× the matching num_workers=0 run "
        "(w0-bs64, 667 samples/s)."
    )
    assert res.best_samples_per_s == 1234.5678901234
    assert (res.n_runs, res.n_failed) == (5, 1)
    assert res.varied == ["loader.multiprocessing_context", "loader.num_workers"]

    md = res.markdown_path.read_text(encoding="utf-8")
    assert md.startswith("# Sweep report: workers-sweep")
    assert res.verdict in md and md.strip() == res.markdown.strip()
    failed_row = next(line for line in md.splitlines() if line.startswith("| w4-spawn-bs64 |"))
    assert "FAILED: RuntimeError: DataLoader worker (pid 4242) exited unexpectedly" in failed_row
    assert "## Failures" in md and "effective.num_workers" not in md
    assert "| 1235 | 1312 | 0.0123 | 25.0% | 512 | 75.0% |" in md  # display formats only
    assert "⚠" not in md and res.reproducibility == "identical"

    for png in res.plot_paths:
        assert png.name in ("throughput.png", "stall.png")
        assert png.read_bytes().startswith(b"\x89PNG")
    with res.csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run_name"] for r in rows] == [c["name"] for c in children]
    for row, c in zip(rows, children, strict=True):
        assert row["loader.num_workers"] == c["params"]["loader.num_workers"]
        for key, value in c["metrics"].items():
            if c["status"] != "FINISHED" or value is None:
                assert row[key] == ""  # a failed run logged no metrics
            else:
                assert row[key] == repr(value) and float(row[key]) == value
    assert rows[-1]["status"] == "FAILED" and "exited unexpectedly" in rows[-1]["error"]


def test_verdict_prefers_the_matching_num_workers_0_run(exp: tuple[Any, str]) -> None:
    client, exp_id = exp
    combos = [(0, 32, 400.0), (0, 64, 600.0), (2, 32, 1000.0), (2, 64, 900.0)]

    def sweep(combos: list[tuple]) -> str:
        children = [
            child(f"w{w}-bs{bs}", sps, params={"loader.batch_size": str(bs)})
            for w, bs, sps in combos
        ]
        return report.analyze_sweep(client, make_sweep(client, exp_id, children)).verdict

    assert sweep(combos) == (
        "Fastest: w2-bs32 at 1000 samples/s, 2.50× the matching num_workers=0 run "
        "(w0-bs32, 400 samples/s)."
    )
    # No num_workers=0 run with batch size 128: compare with the fastest one, and say so.
    assert sweep([*combos, (2, 128, 1500.0)]) == (
        "Fastest: w2-bs128 at 1500 samples/s, 2.50× the fastest num_workers=0 run "
        "(w0-bs64, 600 samples/s)."
    )


def test_verdict_when_num_workers_0_wins_or_nothing_finished(exp: tuple[Any, str]) -> None:
    client, exp_id = exp
    parent = make_sweep(client, exp_id, [child("w0-bs64", 800.0), child("w2-fork-bs64", 700.0)])
    verdict = report.analyze_sweep(client, parent).verdict
    assert "num_workers=0 was fastest here" in verdict and verdict.startswith("Fastest: w0-bs64")

    parent = make_sweep(client, exp_id, [child("w2-fork-bs64", status="FAILED")])
    res = report.analyze_sweep(client, parent)
    assert res.verdict.startswith("No run finished") and res.best_samples_per_s is None
    assert "no error.txt" in res.markdown  # a missing error.txt is tolerated


def test_repeats_grouped_with_median_range_and_significance(exp: tuple[Any, str]) -> None:
    client, exp_id = exp
    runs = {"w0-bs64": [100.0, 120.0, 110.0], "w2-fork-bs64": [200.0, 150.0, 400.0]}
    runs["w4-fork-bs64"] = [180.0, 210.0, 190.0]
    children = [
        child(name, sps, params={"bench.repeat": str(i)})
        for name, values in runs.items()
        for i, sps in enumerate(values)
    ]
    res = report.analyze_sweep(client, make_sweep(client, exp_id, children))
    stats = {
        g.runs[0].name: (len(g.runs), g.median(), min(g.values()), max(g.values()))
        for g in res.groups
    }
    assert stats == {
        "w0-bs64": (3, 110.0, 100.0, 120.0),
        "w2-fork-bs64": (3, 200.0, 150.0, 400.0),
        "w4-fork-bs64": (3, 190.0, 180.0, 210.0),
    }
    assert res.verdict.startswith("Fastest: w2-fork-bs64 (median of 3) at 200 samples/s, 1.82×")
    lines = {line.split(" | ")[0]: line for line in res.markdown.splitlines() if "| 3 |" in line}
    assert lines["| w2-fork-bs64"].endswith("| best |")
    assert "not significant" in lines["| w4-fork-bs64"]  # 180–210 overlaps 150–400
    assert lines["| w0-bs64"].endswith("| -45% |")  # 100–120 does not
    assert "| 3 | 200 | 150–400 | 212 | 159–425 |" in lines["| w2-fork-bs64"]


def test_reproducibility_warning_only_for_mismatching_histories(exp: tuple[Any, str]) -> None:
    client, exp_id = exp
    other_data = {"params": {"dataset.name": "jpeg"}, "loss": [2.0, 1.5, 1.0]}
    same = [
        child("w0-bs64", 500.0),
        child("w2-fork-bs64", 900.0),
        child("w0-jpeg", 300.0, **other_data),
    ]
    res = report.analyze_sweep(client, make_sweep(client, exp_id, same))
    assert res.warnings == [] and res.reproducibility == "identical"  # other dataset: not compared
    assert "⚠" not in res.markdown

    drift = [child("w0-bs64", 500.0), child("w2-fork-bs64", 900.0, loss=[1.25, 0.75, 0.5000001])]
    res = report.analyze_sweep(client, make_sweep(client, exp_id, drift))
    assert len(res.warnings) == 1
    assert "w0-bs64" in res.warnings[0] and "w2-fork-bs64" in res.warnings[0]
    assert keys.LOSS_TRAIN in res.warnings[0] and "epoch 2" in res.warnings[0]
    assert res.reproducibility.startswith("mismatch: ")
    assert "## ⚠ Reproducibility warning" in res.markdown

    alone = report.analyze_sweep(client, make_sweep(client, exp_id, [child("w0-bs64", 1.0)]))
    assert alone.reproducibility == "n/a"


def test_ceilings_name_the_bottleneck(exp: tuple[Any, str]) -> None:
    client, exp_id = exp
    figures = {"w0-bs64": (280.0, 300.0, 1000.0), "w4-fork-bs64": (950.0, 3000.0, 1000.0)}
    children = [
        child(name, sps, params={"bench.mode": mode})
        for name, values in figures.items()
        for mode, sps in zip(report.MODES, values, strict=True)
    ]
    res = report.analyze_sweep(client, make_sweep(client, exp_id, children))
    assert len(res.ceilings) == 2
    assert res.efficiencies == pytest.approx([280 / 300, 950 / 1000])
    w0, w4 = res.ceilings
    # named by the setting, without the mode that differs within the trio
    assert w0.startswith("loader.multiprocessing_context=null, loader.num_workers=0: pipeline")
    assert "mode" not in w0.split(":")[0] and "280 ÷ 300 = 93%" in w0
    assert "input-bound: the loader alone delivers 300 samples/s" in w0
    assert "model alone could take 1000" in w0
    assert (
        w4.startswith("loader.multiprocessing_context=fork, loader.num_workers=4")
        and "950 ÷ 1000 = 95%" in w4
        and "compute-bound" in w4
    )
    assert "## Ceilings" in res.markdown
    # The verdict compares training runs only, never loader_only throughput.
    assert res.verdict.startswith("Fastest: w4-fork-bs64 at 950 samples/s, 3.39× the matching")


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


def test_latest_sweep_and_bad_run_ids(exp: tuple[Any, str], store: str) -> None:
    client, exp_id = exp
    make_sweep(client, exp_id, [child("w0-bs64", 1.0)])
    latest = make_sweep(client, exp_id, [child("w0-bs64", 2.0)])
    assert report.find_latest_sweep(client) == latest
    job = report.load_sweep(client, latest)[1][0].run_id
    with pytest.raises(report.SweepNotFound, match="not a sweep parent"):
        report.load_sweep(client, job)
    with pytest.raises(report.SweepNotFound, match="not found"):
        report.load_sweep(client, "0" * 32)


def test_cli_exit_codes(exp: tuple[Any, str], store: str, tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location(
        "report_cli", Path(__file__).parents[1] / "scripts" / "report.py"
    )
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    client, exp_id = exp
    parent = make_sweep(client, exp_id, [child("w0-bs64", 5.0), child("w2-fork-bs64", 10.0)])
    argv = ["--tracking-uri", store, "--out", str(tmp_path), "--no-publish"]
    assert cli.main([parent, *argv]) == 0
    assert "# Sweep report" in capsys.readouterr().out and (tmp_path / "report.md").exists()
    assert keys.VERDICT_TAG not in client.get_run(parent).data.tags  # --no-publish
    assert cli.main(["f" * 32, *argv]) == 1
    assert "not found" in capsys.readouterr().err
