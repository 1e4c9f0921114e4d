"""The prediction of training throughput from loader_only and model_only runs, on sweeps built
in memory: which runs feed which setting, each bound of the model, and the report's table."""

from __future__ import annotations

import pytest

from loaderbench import keys
from loaderbench.report.analysis import analyze
from loaderbench.report.predict import Costs, steady_seconds
from loaderbench.report.render import markdown
from tests.helpers import child

N, B, EPOCHS = 1024, 64, 2
FIRST_BATCH = 0.0123456  # what helpers.child records as summary/first_batch_s


def run(name: str, mode: str, sps: float, *, cpu: float = 1.0, **params: str):
    row = child(name, sps, params={"bench.mode": mode, **params})
    row.params |= {
        "data.train_size": str(N),
        "loader.batch_size": str(B),
        "trainer.epochs": str(EPOCHS),
        "effective.persistent_workers": params.get("loader.persistent_workers", "False"),
    }
    row.metrics[keys.CPU_UTILIZATION] = cpu
    row.tags = {"env.cpu_affinity": "2", "env.cpu_count": "2", "env.torch_threads": "2"}
    return row


def sweep(loader: dict[str, float], model: float, train: dict[str, float], **params: str):
    """loader_only and train runs named like ``w2-fork``, one model_only run (at w0)."""
    rows = [run(f"{n}-lo", "loader_only", sps, **params) for n, sps in loader.items()]
    rows += [run(f"{n}-tr", "train", sps, **params) for n, sps in train.items()]
    rows.append(run("w0-mo", "model_only", model, cpu=1.8, **params))
    return rows


def steady(sps: float) -> float:
    """Seconds per sample of a loader_only run once its first batch is there."""
    return (N / sps - FIRST_BATCH) / (N - B)


def test_each_setting_is_predicted_from_its_loader_the_w0_loader_and_the_model():
    rows = sweep({"w0": 500.0, "w2": 1500.0}, model=1000.0, train={"w0": 320.0, "w2": 700.0})
    a = analyze("sweep", rows)
    by = {p.setting.split("num_workers=")[1]: p for p in a.predictions}
    assert set(by) == {"0", "2"}
    c_load, c_step = steady(500.0), 1 / 1000.0
    t0 = c_load + c_step  # one process: load, then step
    w0 = by["0"]
    assert w0.predicted == pytest.approx(N / (FIRST_BATCH + B * c_step + (N - B) * t0))
    assert w0.measured == 320.0 and w0.error == pytest.approx(w0.predicted / 320.0 - 1)
    w2 = by["2"]  # the step keeps 1.8 of 2 cores: loading spills into the step's cores
    free = 2 - 1.8
    load = 2 * steady(1500.0)  # CPU a sample: two one-thread workers at their loader's pace
    shared = (c_step + load) / (1 + free)
    assert w2.limit == "cores shared with the step" and shared > max(c_step, steady(1500.0))
    assert w2.predicted == pytest.approx(N / (FIRST_BATCH + B * c_step + (N - B) * shared))
    md = markdown(a)
    assert "predicted train" in md and f"{w2.error:+.1%}" in md


@pytest.mark.parametrize(
    ("workers", "loader_s", "c_step", "step_cores", "expected", "limit"),
    [
        # a one-thread step leaves a core: loading (2 × 0.1 ms) fits beside a 5 ms step
        (2, 1e-4, 5e-3, 1.0, 5e-3, "the step"),
        # ... but not beside a 0.1 ms one; one worker alone then sets the pace
        (1, 5e-3, 1e-4, 1.0, 5e-3, "the loader"),
        # a step on both cores: loading (2 × 0.5 ms) stalls it, as if in one process
        (2, 5e-4, 1e-3, 2.0, 2e-3, "cores shared with the step"),
        # a step on 1.5 cores: half a core beside it, the rest of loading stalls it
        (2, 5e-4, 1e-3, 1.5, (1e-3 + 1e-3) / 1.5, "cores shared with the step"),
    ],
)
def test_the_largest_bound_sets_the_pace(workers, loader_s, c_step, step_cores, expected, limit):
    costs = Costs(
        workers=workers, loader_s=loader_s, startup_s=0.0, c_load=1e-3, c_step=c_step,
        step_cores=step_cores, cores=2, threads=2, samples=N,
    )  # fmt: skip
    t, bound = steady_seconds(costs)
    assert (t, bound) == (pytest.approx(expected), limit)


def test_without_a_model_only_run_of_the_same_training_nothing_is_predicted():
    rows = sweep({"w0": 500.0, "w2": 1500.0}, model=1000.0, train={})
    assert len(analyze("sweep", rows).predictions) == 2
    rows[-1].params["loader.batch_size"] = "32"  # a different training: not this one's ceiling
    rows[-1].params["model.width"] = "64"
    for r in rows[:-1]:
        r.params["model.width"] = "16"
    assert analyze("sweep", rows).predictions == []
    without_w0 = [r for r in sweep({"w2": 1500.0}, 1000.0, {}) if r.name != "w0-lo"]
    assert analyze("sweep", without_w0).predictions == []


def test_persistent_workers_pay_their_start_up_once():
    spawn = {"loader.multiprocessing_context": "spawn"}
    rows = sweep({"w0": 500.0, "w2": 1500.0}, 1000.0, {}, **spawn)
    persistent = sweep(
        {"w0": 500.0, "w2": 1500.0}, 1000.0, {}, **spawn, **{"loader.persistent_workers": "True"}
    )
    (w2,) = [p for p in analyze("s", rows).predictions if p.costs.workers == 2]
    (kept,) = [p for p in analyze("s", persistent).predictions if p.costs.workers == 2]
    assert kept.costs.startup_s == pytest.approx(w2.costs.startup_s / EPOCHS)
