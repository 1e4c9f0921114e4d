"""The report's rules on sweeps built in memory: no store, no torch, no files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loaderbench import keys
from loaderbench.report import render
from loaderbench.report.analysis import Analysis, analyze
from loaderbench.report.runs import error_line
from tests.helpers import ERROR, ROOT, basic_sweep, child, traceback_of


def report(children) -> tuple[Analysis, str]:
    a = analyze("sweep", children)
    return a, render.markdown(a)


def test_importing_the_report_imports_neither_torch_nor_mlflow():
    code = "import loaderbench.report, sys; print(sorted({'torch', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_basic_sweep_verdict_counts_and_table():
    a, md = report(basic_sweep())
    ratio = 1234.5678901234 / 667.25
    assert a.verdict.startswith(
        "Fastest: w4-fork-bs64 at 1235 samples/s (95% interval 1210–1259), "
        f"{ratio:.2f}× the matching num_workers=0 run (w0-bs64, 667 samples/s; between "
    )
    assert a.winner == "w4-fork-bs64"
    assert a.recommendation == (
        "DataLoader(dataset, num_workers=4, multiprocessing_context='fork')"
    )
    assert (a.n_runs, a.n_failed, a.best_samples_per_s) == (5, 1, 1234.5678901234)
    assert a.varied == ["loader.multiprocessing_context", "loader.num_workers"]
    assert "| 1235 | 1312 | 0.0123 | 25.0% | 512 | 75.0% |" in md  # display formats only
    assert "effective.num_workers" not in md and "## Failures" in md
    failed_row = next(line for line in md.splitlines() if line.startswith("| w4-spawn-bs64 |"))
    assert f"FAILED: {ERROR}" in failed_row


def test_verdict_prefers_the_matching_num_workers_0_run():
    combos = [(0, 32, 400.0), (0, 64, 600.0), (2, 32, 1000.0), (2, 64, 900.0)]

    def verdict(combos: list[tuple]) -> str:
        children = [
            child(f"w{w}-bs{bs}", sps, params={"loader.batch_size": str(bs)})
            for w, bs, sps in combos
        ]
        return analyze("sweep", children).verdict

    assert verdict(combos).startswith(
        "Fastest: w2-bs32 at 1000 samples/s (95% interval 980–1020), 2.50× the matching "
        "num_workers=0 run (w0-bs32, 400 samples/s; between 2.40× and 2.60×)"
    )
    # No num_workers=0 run with batch size 128: compare with the fastest one, and say so.
    assert "2.50× the fastest num_workers=0 run (w0-bs64, 600 samples/s;" in verdict(
        [*combos, (2, 128, 1500.0)]
    )


def test_verdict_when_num_workers_0_wins_or_nothing_finished():
    verdict = analyze("sweep", [child("w0-bs64", 800.0), child("w2-fork-bs64", 700.0)]).verdict
    assert "num_workers=0 was fastest here" in verdict and verdict.startswith("Fastest: w0-bs64")

    a, md = report([child("w2-fork-bs64", status="FAILED")])
    assert a.verdict.startswith("No run finished") and a.best_samples_per_s is None
    assert "no error.txt" in md  # a failed run without an error line


def test_repeats_grouped_with_median_range_and_significance():
    runs = {"w0-bs64": [100.0, 120.0, 110.0], "w2-fork-bs64": [200.0, 150.0, 400.0]}
    runs["w4-fork-bs64"] = [180.0, 210.0, 190.0]
    children = [
        child(name, sps, params={"bench.repeat": str(i)})
        for name, values in runs.items()
        for i, sps in enumerate(values)
    ]
    a, md = report(children)
    stats = {
        g.runs[0].name: (len(g.runs), g.median(), min(g.values()), max(g.values()))
        for g in a.groups
    }
    assert stats == {
        "w0-bs64": (3, 110.0, 100.0, 120.0),
        "w2-fork-bs64": (3, 200.0, 150.0, 400.0),
        "w4-fork-bs64": (3, 190.0, 180.0, 210.0),
    }
    # 200 (150–400) against 190 (180–210): the ranges overlap, so no winner; the simpler of
    # the two (fewer workers) is what to keep.
    assert a.verdict.startswith("No significant difference between w2-fork-bs64 (median of 3)")
    assert "keep the simpler w2-fork-bs64" in a.verdict and a.winner == "none"
    lines = {line.split(" | ")[0]: line for line in md.splitlines() if "| 3 |" in line}
    assert lines["| w2-fork-bs64"].endswith("| best |")
    assert "not significant" in lines["| w4-fork-bs64"]  # 180–210 overlaps 150–400
    assert lines["| w0-bs64"].endswith("| -45% |")  # 100–120 does not
    assert "| 3 | 200 | 150–400 | 212 | 159–425 |" in lines["| w2-fork-bs64"]


def test_reproducibility_warning_only_for_mismatching_histories():
    other_data = {"params": {"dataset.name": "jpeg"}, "loss": [2.0, 1.5, 1.0]}
    same = [
        child("w0-bs64", 500.0),
        child("w2-fork-bs64", 900.0),
        child("w0-jpeg", 300.0, **other_data),
    ]
    a, md = report(same)
    assert a.warnings == [] and a.reproducibility == "identical"  # other dataset: not compared
    assert "⚠" not in md

    drift = [child("w0-bs64", 500.0), child("w2-fork-bs64", 900.0, loss=[1.25, 0.75, 0.5000001])]
    a, md = report(drift)
    assert len(a.warnings) == 1
    assert "w0-bs64" in a.warnings[0] and "w2-fork-bs64" in a.warnings[0]
    assert keys.LOSS_TRAIN in a.warnings[0] and "epoch 2" in a.warnings[0]
    assert a.reproducibility.startswith("mismatch: ")
    assert "## ⚠ Reproducibility warning" in md

    assert analyze("sweep", [child("w0-bs64", 1.0)]).reproducibility == "n/a"


def test_ceilings_name_the_bottleneck():
    figures = {"w0-bs64": (280.0, 300.0, 1000.0), "w4-fork-bs64": (950.0, 3000.0, 1000.0)}
    children = [
        child(name, sps, params={"bench.mode": mode})
        for name, values in figures.items()
        for mode, sps in zip(keys.MODES, values, strict=True)
    ]
    a, md = report(children)
    assert len(a.ceilings) == 2
    assert a.efficiencies == pytest.approx([280 / 300, 950 / 1000])
    w0, w4 = a.ceilings
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
    assert "## Ceilings" in md
    # The verdict compares training runs only, never loader_only throughput.
    assert a.verdict.startswith("Fastest: w4-fork-bs64 at 950 samples/s (95% interval 931–969), ")
    assert "3.39× the matching num_workers=0 run" in a.verdict


def test_error_line_is_the_exception_of_a_traceback():
    assert error_line(traceback_of(ERROR)) == ERROR
    assert error_line("\nout of memory\nmore\n") == "out of memory"
    assert error_line("") is None


def test_a_difference_within_the_noise_is_no_difference():
    a = analyze("sweep", [child("w0-bs64", 412.0, noise=0.04), child("w2-fork-bs64", 405.0)])
    assert a.verdict.startswith("No significant difference between w0-bs64 (412 samples/s) and")
    assert "+1.7% is within the noise (their 95% intervals, ±4% and ±" in a.verdict
    assert a.verdict.endswith("overlap); keep the simpler num_workers=0.")
    assert a.winner == "none" and a.recommendation == "DataLoader(dataset)"


def test_a_clear_win_names_the_winner_and_what_to_paste():
    a, md = report([child("w0-bs64", 300.0), child("w2-fork-bs64", 600.0)])
    assert a.winner == "w2-fork-bs64"
    assert "DataLoader(dataset, num_workers=2, multiprocessing_context='fork')" in md
    assert "waits for data 25% of the time" in a.why


def test_runs_too_short_for_a_noise_estimate_name_no_winner():
    a = analyze("sweep", [child("w0-bs64", 300.0, noise=None), child("w2-fork-bs64", 600.0)])
    assert a.winner == "none" and "too short to estimate their noise" in a.verdict


def test_a_setting_torch_ignored_is_not_recommended():
    pinned = {"loader.pin_memory": "True", "effective.pin_memory": "False"}
    a = analyze("sweep", [child("w2-pin", 600.0, params=pinned), child("w0-bs64", 100.0)])
    assert a.winner == "w2-pin" and "pin_memory" not in a.recommendation


def test_batch_size_sweeps_compare_histories_only_within_a_batch_size():
    runs = [
        child("bs32", 500.0, params={"loader.batch_size": "32"}, loss=[2.0, 1.0, 0.5]),
        child("bs64", 600.0, params={"loader.batch_size": "64"}),
    ]
    assert analyze("sweep", runs).warnings == []
    drift = [*runs, child("w2-bs32", 700.0, params={"loader.batch_size": "32"})]
    assert len(analyze("sweep", drift).warnings) == 1  # same batch size, other history


def test_a_knob_torch_ignored_gives_no_winner_whatever_the_figures():
    def pin(value: str, sps: float):
        params = {"loader.pin_memory": value, "effective.pin_memory": "False"}
        return child(f"w0-{'pin' if value == 'True' else 'nopin'}", sps, params=params, noise=0.001)

    a = analyze("sweep", [pin("False", 400.0), pin("True", 440.0)])  # far beyond ±0.1%
    assert a.winner == "none"
    assert a.verdict.startswith("No difference: w0-pin and w0-nopin ran the same settings")
    assert "loader.pin_memory had no effect here" in a.verdict
    assert a.recommendation == "DataLoader(dataset)"


def test_a_run_that_delivered_samples_twice_is_flagged_and_left_out_of_the_verdict():
    rows = [child("w0", 400.0), child("w2", 800.0)]
    rows[
        1
    ].exactly_once = (
        "epoch 0: 8192 samples arrived where 4096 were due (4096 duplicates, 0 missing of 4096)"
    )
    a, md = report(rows)
    assert a.winner != "w2" and a.recommendation == "DataLoader(dataset)"
    assert a.verdict.startswith(
        "Only one setting delivered every sample exactly once: w0 at 400 samples/s"
    )
    assert a.verdict.endswith(" Left out: w2 (samples not delivered exactly once).")
    assert "## ⚠ Samples not delivered exactly once" in md
    assert "- **w2**: epoch 0: 8192 samples arrived where 4096 were due" in md
    assert "## ⚠ Samples not delivered" in render.note(a)  # the MLflow UI's description too
    rows[1].exactly_once = keys.EXACTLY_ONCE_OK
    assert "not delivered" not in report(rows)[1]


def test_idle_workers_are_said_in_words():
    rows = [child("w2", 500.0), child("w8", 480.0)]
    rows[1].metrics[keys.IDLE_WORKERS] = 4.0
    rows[0].metrics[keys.IDLE_WORKERS] = 0.0
    a, md = report(rows)
    assert a.idle == [
        "**w8**: 4 of 8 workers sat idle: each stream of shards is read by one worker, and "
        "there were fewer streams (at most one per shard, `dataset.streams`) than workers."
    ]
    assert "## Idle workers" in md and "w2**:" not in md


def _backend(name: str, sps: float, backend: str, ran: str | None = None, **kw):
    params = {keys.BACKEND_PARAM: backend, keys.BACKEND_EFFECTIVE: ran or backend}
    if backend == keys.THREADS:
        params["loader.multiprocessing_context"] = "null"
    return child(name, sps, params=params, **kw)


def test_a_thread_winner_is_named_under_the_noise_rule_with_its_pipeline_to_paste():
    runs = [_backend("w0", 400.0, "dataloader"), _backend("w2", 700.0, "dataloader")]
    runs += [_backend("t2", 1000.0, "threads")]
    for run in runs:
        run.params["loader.batch_size"] = "8"
    a, md = report(runs)
    assert a.winner == "t2" and "2.50× the matching num_workers=0 run" in a.verdict
    assert a.recommendation.startswith("import torchdata.nodes as tn")
    assert "DataLoader(" not in a.recommendation and "num_workers=2" in a.recommendation
    assert a.recommendation in md
    # the snippet runs as it stands, on any map-style dataset
    import torch

    dataset = [(torch.full((3, 4, 4), float(i)), i % 2) for i in range(10)]
    scope = {"dataset": dataset}
    exec(a.recommendation, scope)
    batches = list(scope["loader"])
    assert [len(b[1]) for b in batches] == [8, 2]
    assert sorted(int(x) for b in batches for x in b[0][:, 0, 0, 0]) == list(range(10))


def test_backends_within_the_noise_keep_processes_and_zero_threads_is_zero_workers():
    runs = [_backend("w2", 1000.0, "dataloader", noise=0.05), _backend("t2", 1010.0, "threads")]
    a = analyze("sweep", runs)
    assert a.winner == "none" and a.recommendation.startswith("DataLoader(dataset, num_workers=2")
    same = [_backend("w0", 400.0, "dataloader"), _backend("t0", 410.0, "threads", "dataloader")]
    a = analyze("sweep", same)
    assert a.verdict.startswith("No difference: t0 and w0 ran the same settings")
    assert "loader.backend" in a.verdict
