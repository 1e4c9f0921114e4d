"""bench.mode=emulated and trainer.torch_threads: what an emulated run records in a real store,
the step's timeline (on a fake clock: no timing thresholds), the fed rule and the ceiling from
rows built in memory, the predictions, the tuner's fed goal, and every bad input's one line."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from loaderbench import feeding, keys, store, tracking
from loaderbench.config import ConfigError
from loaderbench.devices import set_torch_threads
from loaderbench.emulated import CpuStep, StepTime
from loaderbench.experiment import Launch, run
from loaderbench.loop import emulate_epoch
from loaderbench.record import _objective
from loaderbench.report.analysis import analyze, check_reproducibility
from loaderbench.report.feed import decide, table
from loaderbench.report.predict import Costs, uncertain
from loaderbench.report.render import markdown, note
from loaderbench.tune import Candidate, Search, Trial, build_space, tuned_keys
from loaderbench.tune_space import thread_counts
from tests.helpers import child, compose_config

EMULATED = ("bench.mode=emulated", "bench.step_ms=2", "loader.num_workers=0")
MODEL_PREFIXES = ("loss/", "acc/", "summary/val_acc", "summary/train_loss")


def _stored(sqlite_uri: str, run_id: str):
    return store.get_run(store.open_store(sqlite_uri, must_exist=True), run_id)


def test_an_emulated_run_records_its_step_and_verdict_in_sqlite(small_cfg, sqlite_uri):
    tracked = ("mlflow.enabled=true", f"mlflow.tracking_uri={sqlite_uri}", "trainer.epochs=2")
    run(small_cfg(*EMULATED, *tracked, "bench.step_sync=none"), launch=Launch())
    client = store.open_store(sqlite_uri, must_exist=True)
    (found,) = client.search_runs([client.get_experiment_by_name("loaderbench").experiment_id])
    p, t, m = found.data.params, found.data.tags, found.data.metrics
    assert found.info.status == "FINISHED"
    assert (p["bench.mode"], p["bench.step_sync"], p[keys.STEP_MS_EFFECTIVE]) == (
        "emulated",
        "none",
        "2.0",
    )
    assert p[keys.TORCH_THREADS_EFFECTIVE] == str(torch.get_num_threads())
    assert t[keys.EMULATED_TAG] == "true"
    assert (
        "bench.step_ms=2" in t["effective.step_ms.reason"]
        and "sleep" in t["effective.step_ms.reason"]
    )
    assert t[keys.FED_TAG] == feeding.label(m[keys.SUMMARY_STEP_WAIT], 2.0)  # one rule
    assert t[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK
    assert t[keys.FED_TAG] in t[keys.NOTE_TAG]  # the run's description says it
    for key in (*keys.EPOCH_KEYS, *keys.SUMMARY_KEYS, keys.SUMMARY_STEP_WAIT, keys.SAMPLES_SEEN):
        assert math.isfinite(m[key]), key
    assert not [k for k in m if k.startswith(MODEL_PREFIXES)]  # no model: no loss, no accuracy
    history = client.get_metric_history(found.info.run_id, keys.STEP_WAIT_MS)
    assert sorted(h.step for h in history) == [0, 1]
    # the epoch's wall time holds every step: at least 8 batches of 2 ms
    assert m[keys.EPOCH_S] >= 8 * 2e-3


def test_step_from_reads_a_recorded_runs_compute_per_batch(small_cfg, sqlite_uri):
    tracked = ("mlflow.enabled=true", f"mlflow.tracking_uri={sqlite_uri}")
    run(small_cfg("bench.mode=model_only", *tracked), launch=Launch())
    client = store.open_store(sqlite_uri, must_exist=True)
    (model,) = client.search_runs([client.get_experiment_by_name("loaderbench").experiment_id])
    ms = model.data.metrics[keys.SUMMARY_COMPUTE_PER_BATCH]
    assert ms > 0
    emulated = small_cfg(
        "bench.mode=emulated",
        f"bench.step_from={model.info.run_id}",
        "loader.num_workers=0",
        f"mlflow.tracking_uri={sqlite_uri}",  # where the run is read from; this one is not
    )
    t = tracking.InMemoryTracker()
    run(emulated, tracker=t, launch=Launch())
    assert t.params[keys.STEP_MS_EFFECTIVE] == ms
    assert f"run {model.info.run_id}'s compute per batch" in t.tags["effective.step_ms.reason"]


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["bench.mode=emulated"], r"exactly one of bench\.step_ms.*none is set: add one"),
        (
            ["bench.mode=emulated", "bench.step_ms=5", "bench.step_from=abc"],
            r"bench\.step_ms=5(\.0)?, bench\.step_from=abc are all set: keep one",
        ),
        (["bench.mode=loader_only", "bench.step_ms=5"], r"only bench\.mode=emulated emulates"),
        (["bench.mode=emulated", "bench.step_ms=0"], r"bench\.step_ms=0(\.0)?: a step takes more"),
        (
            ["bench.mode=emulated", "bench.step_per_sample_ms=-1"],
            r"bench\.step_per_sample_ms=-1(\.0)?: a step takes more than 0 ms",
        ),
        (
            ["bench.mode=emulated", "bench.step_ms=5", "bench.step_sync=maybe"],
            r"bench\.step_sync=maybe: choose step",
        ),
        (["trainer.torch_threads=0"], r"trainer\.torch_threads=0: must be at least 1"),
    ],
)
def test_bad_step_input_is_one_line_naming_the_key(small_cfg, overrides, line):
    tracker = tracking.InMemoryTracker()
    with pytest.raises(ConfigError, match=line) as err:
        run(small_cfg(*overrides), tracker=tracker, launch=Launch())
    assert "\n" not in str(err.value)
    assert tracker.status is None  # nothing recorded


def test_step_from_a_missing_run_or_one_without_compute_names_the_run(small_cfg, sqlite_uri):
    given = ("bench.mode=emulated", f"mlflow.tracking_uri={sqlite_uri}")
    with pytest.raises(ConfigError, match=r"bench\.step_from=nosuchrun: run nosuchrun not found"):
        run(small_cfg(*given, "bench.step_from=nosuchrun"), launch=Launch())
    run(small_cfg("bench.mode=loader_only", "mlflow.enabled=true", given[1]), launch=Launch())
    client = store.open_store(sqlite_uri, must_exist=True)
    (lo,) = client.search_runs([client.get_experiment_by_name("loaderbench").experiment_id])
    rid = lo.info.run_id
    with pytest.raises(ConfigError, match=rf"run {rid} \(loader_only\) has no compute figure"):
        run(small_cfg(*given, f"bench.step_from={rid}"), launch=Launch())


# --- the step's timeline, on a fake clock ------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def _feed(sync: str, load_s: float, steps: int, step_s: float = 0.010):
    clock = FakeClock()
    step = CpuStep(StepTime(step_s * 1e3, None, 8, "test"), sync, clock, clock.sleep)
    for _ in range(steps):
        clock.now += load_s  # the loop fetches the next batch
        step(8)
    waits = step.take_waits()  # drains: the epoch's end waits for every queued step
    return waits, clock


def test_waiting_for_each_step_the_step_waits_for_every_load():
    waits, clock = _feed("step", load_s=0.004, steps=5)
    assert waits == pytest.approx([0.004] * 4)  # before steps 2..5
    assert clock.now == pytest.approx(5 * (0.004 + 0.010))  # load, then step, in turn


def test_queued_steps_hide_a_load_shorter_than_the_step():
    waits, clock = _feed("none", load_s=0.004, steps=6)
    assert waits == pytest.approx([0.0] * 5)  # the device always had the next step queued
    assert clock.now == pytest.approx(0.004 + 6 * 0.010)  # the first load, then steps only
    assert max(clock.slept[:-1]) <= 0.010  # a launch blocks for the oldest step, no longer


def test_queued_steps_wait_what_the_load_takes_beyond_the_step():
    waits, clock = _feed("none", load_s=0.015, steps=4)
    assert waits == pytest.approx([0.005] * 3)
    assert clock.now == pytest.approx(4 * 0.015 + 0.010)  # the last step drained at the end


def test_a_step_per_sample_scales_with_the_batch():
    t = StepTime(None, 0.5, 64, "x")
    assert (t.ms, t.seconds(64), t.seconds(10)) == (32.0, 0.032, 0.005)


class RecordedStep:
    """A step that only counts: what emulate_epoch does with it, without a clock."""

    def __init__(self):
        self.calls, self.drains = [], 0

    def __call__(self, samples: int) -> None:
        self.calls.append(samples)

    def drain(self) -> None:
        self.drains += 1

    def take_waits(self) -> list[float]:
        return [0.1 * i for i in range(len(self.calls) - 1)]


def test_an_emulated_epoch_steps_every_batch_and_leaves_the_warm_up_out():
    batches = [(torch.zeros(n, 1), torch.zeros(n, dtype=torch.long)) for n in (4, 4, 4, 4, 2)]
    step = RecordedStep()
    stats = emulate_epoch(batches, torch.device("cpu"), step, epoch=0, warmup_batches=2)
    assert step.calls == [4, 4, 4, 4, 2]
    assert step.drains == 3  # epoch start, the warm-up's edge, epoch end
    # waits before steps 2..5; steps 1-2 are warm-up and step 3 waited for its drain
    assert stats.step_waits == pytest.approx([0.2, 0.3])


def test_fed_is_a_wait_of_at_most_five_percent_of_the_step():
    assert feeding.is_fed(1.0, 20.0) and feeding.label(1.0, 20.0) == keys.FED
    assert feeding.label(1.01, 20.0) == keys.STARVED
    assert feeding.is_fed(math.nan, 20.0) is None


# --- the report, on rows built in memory -------------------------------------------------------
def em(workers: int, step: float, sync: str, wait: float, sps: float, **params: str):
    sync_name = "sync" if sync == "step" else "async"
    row = child(
        f"w{workers}-{step:g}ms-{sync_name}",
        sps,
        params={
            "bench.mode": "emulated",
            "bench.step_ms": str(step),
            "bench.step_sync": sync,
            keys.STEP_MS_EFFECTIVE: str(float(step)),
            "loader.batch_size": "64",
            "data.train_size": "4096",
            "trainer.epochs": "3",
            **params,
        },
    )
    row.metrics[keys.SUMMARY_STEP_WAIT] = wait
    row.metrics.pop(keys.SUMMARY_VAL_ACC)
    return row


def test_the_fewest_fed_workers_win_and_the_starved_give_the_ceiling():
    rows = [em(0, 50, "step", 38.0, 730.0), em(1, 50, "step", 2.0, 1200.0)]
    rows.append(em(2, 50, "step", 0.2, 1270.0))
    a = analyze("s", rows)
    assert a.winner == "w1-50ms-sync"  # w1 waits 2 ms <= 2.5 ms: fed, with fewer workers than w2
    assert a.verdict.startswith("w1-fork is the fewest workers that keep a 50 ms step")
    assert "w0 starves it (38 ms a step)" in a.verdict
    # w0 steps in turn with its loading: the 38 ms it waits a step is its loading
    assert a.feed.ceiling_ms == pytest.approx(38.0)
    assert "num_workers=1" in a.recommendation
    header, body = table(a.feed)
    assert header == ["step", "step_sync", "w0", "w1-fork", "w2-fork"]
    assert body == [["50 ms", "step", "starved 38 ms", "fed 2 ms", "fed 0.2 ms"]]
    assert "| 50 ms | step | starved 38 ms |" in note(a) and "## Feeding the step" in markdown(a)


def test_none_fed_names_the_closest_and_all_fed_is_a_bound():
    starved = analyze("s", [em(0, 5, "step", 38.0, 1400.0), em(2, 5, "step", 14.0, 3300.0)])
    assert starved.winner == "none"
    assert starved.verdict.startswith("No setting tried keeps a 5 ms step (step_sync=step) fed")
    assert "num_workers=2" in starved.recommendation  # the closest, to paste
    fed = decide(analyze("s", [em(0, 50, "none", 0.1, 1270.0)]).groups)
    assert math.isnan(fed.ceiling_ms)
    assert fed.ceiling.startswith("Fed at every setting tried down to 50 ms a step")


def test_over_several_steps_the_winner_is_fed_under_every_one():
    rows = [
        em(0, 50, "none", 0.2, 1275.0),
        em(2, 50, "none", 0.1, 1278.0),
        em(0, 20, "none", 18.0, 1650.0),
        em(2, 20, "none", 0.5, 3000.0),
    ]
    a = analyze("s", rows)
    assert a.winner == "w2-20ms-async"  # w0 starves the 20 ms step; w2 is fed under both
    assert "a 20 ms step (step_sync=none): w2-fork; a 50 ms step (step_sync=none): w0" in a.verdict
    # the ceiling: the fastest delivery of a starved setting (w0 at 20 ms, overlapped: T + wait)
    assert a.feed.ceiling_ms == pytest.approx(20.0 + 18.0)
    lo = child("w4-lo", 10000.0, params={"bench.mode": "loader_only", "loader.batch_size": "64"})
    assert analyze("s", [*rows, lo]).feed.ceiling_ms == pytest.approx(64e3 / 10625.0)


def test_fed_under_no_step_but_some_pastes_the_fewest_workers_fed_under_the_most():
    rows = [
        em(0, 5, "none", 60.0, 960.0),
        em(2, 5, "none", 36.0, 1450.0),
        em(4, 5, "none", 35.0, 1350.0),  # a shorter wait than w2's, starved all the same
        em(0, 50, "none", 16.0, 960.0),
        em(2, 50, "none", 0.0, 1207.0),
        em(4, 50, "none", 0.0, 1165.0),
    ]
    a = analyze("s", rows)
    assert a.winner == "none" and "No setting tried is fed under every step" in a.verdict
    assert "num_workers=2" in a.recommendation
    assert "With w2-fork a 50 ms step (step_sync=none) waits 0 ms a step" in a.feed.why


def test_emulated_runs_are_predicted_from_the_loaders_ceiling_and_the_step():
    def lo(w: int, sps: float):
        params = {"bench.mode": "loader_only", "loader.batch_size": "64"}
        params |= {"data.train_size": "4096", "trainer.epochs": "3"}
        return child(f"w{w}-lo", sps, params={"loader.num_workers": str(w), **params})

    rows = [lo(0, 2000.0), lo(2, 3000.0)]
    rows += [em(0, 50, "step", 30.0, 800.0), em(0, 50, "none", 0.1, 1250.0)]
    rows += [em(2, 10, "step", 11.0, 2900.0)]
    preds = {
        (p.setting.split("num_workers=")[1][0], p.sync): p
        for p in analyze("s", rows).emulated_predictions
    }
    first = 0.0123456  # helpers.child's first batch
    loader_ms = {
        w: 1e3 * 64 * (4096 / sps - first) / (4096 - 64) for w, sps in ((0, 2000.0), (2, 3000.0))
    }
    p = preds["0", "step"]  # load, then step: L + T a batch
    assert p.wait_ms == pytest.approx(loader_ms[0])
    assert p.predicted == pytest.approx(4096 / (first + (63 * (loader_ms[0] + 50) + 50) / 1e3))
    assert preds["0", "none"].wait_ms == 0.0  # L < T: the queue hides the loading
    assert preds["2", "step"].wait_ms == pytest.approx(loader_ms[2] - 10)  # workers: max(L, T)
    assert "predicted wait (ms)" in markdown(analyze("s", rows))


def test_a_cpu_prediction_is_uncertain_where_workers_share_cores_with_threads():
    def costs(workers: int, threads: int) -> Costs:
        return Costs(workers, 1e-4, 0.0, 1e-3, 1e-3, float(threads), 2, threads, 1024)

    assert "preempts one of the step's threads" in uncertain(costs(1, 2))
    assert "trainer.torch_threads=1" in uncertain(costs(1, 2))
    assert uncertain(costs(1, 1)) == uncertain(costs(0, 2)) == ""  # a core each; no workers


def test_torch_threads_change_training_so_histories_compare_within_a_count():
    a = child("w0-tt1", 100.0, params={"trainer.torch_threads": "1"}, loss=[1.0, 0.5])
    b = child("w0-tt2", 100.0, params={"trainer.torch_threads": "2"}, loss=[1.0, 0.50001])
    c = child("w2-tt2", 100.0, params={"trainer.torch_threads": "2"}, loss=[1.0, 0.50001])
    warnings, verdict = check_reproducibility(
        [a, b, c], ["loader.num_workers", keys.TORCH_THREADS_PARAM]
    )
    assert warnings == [] and verdict == "identical"  # tt2 against tt2 only
    assert keys.TORCH_THREADS_PARAM not in keys.TRAINING_INVARIANT_PARAMS


def test_torch_threads_null_restores_torchs_default():
    default = set_torch_threads(None)
    try:
        assert set_torch_threads(1) == 1
        assert set_torch_threads(None) == default
    finally:
        set_torch_threads(None)


def test_a_run_with_torch_threads_records_them_and_is_named_tt(small_cfg):
    t = tracking.InMemoryTracker()
    try:
        run(small_cfg(*EMULATED, "trainer.torch_threads=1"), tracker=t, launch=Launch())
    finally:
        set_torch_threads(None)
    assert t.params[keys.TORCH_THREADS_EFFECTIVE] == 1 and t.run_name == "w0-bs32-tt1"


# --- the tuner's fed goal ----------------------------------------------------------------------
def test_the_fed_search_stops_at_the_first_fed_count_and_confirms_the_one_below():
    cfg = compose_config(["sweep=tune", "tune.max_workers=4", "tune.contexts=[fork]"])
    space = build_space(cfg, {}, False)
    s = Search(space, 20, goal="fed")
    assert [name for name, _ in s.stages()] == ["workers"]
    first = s.stages()[0][1](s)
    s.done = [Trial(first[0], True, 600.0, fed=False), Trial(first[1], True, 900.0, fed=False)]
    assert not s.enough("workers")
    s.done.append(Trial(first[2], True, 950.0, fed=True))
    assert s.enough("workers")  # w3 and w4 would only cost more
    assert s.to_confirm() == [first[2], first[1]]  # w2 fed, w1 starved
    s.done = [Trial(first[0], True, 600.0, fed=False), Trial(first[1], True, 900.0, fed=False)]
    assert s.to_confirm() == [first[1]]  # none fed: the closest


def test_tuning_the_threads_adds_a_stage_that_fills_the_cores():
    assert thread_counts(2) == [1, 2] and thread_counts(6) == [1, 2, 4, 6]
    cfg = compose_config(["sweep=tune", "tune.torch_threads=true", "tune.contexts=[fork]"])
    assert keys.TORCH_THREADS_PARAM in tuned_keys(cfg)
    space = build_space(cfg, {}, False)
    space.torch_threads, space.cores = [1, 2], 2
    s = Search(space, 20)
    assert [name for name, _ in s.stages()][:2] == ["workers", "threads"]
    s.done = [Trial(space.baseline(0), True, 900.0), Trial(space.baseline(1), True, 500.0)]
    labels = [c.label for c in s.fresh(s.stages()[1][1](s))]
    assert labels == ["w0-tt1", "w1-fork-persist-pf2-tt1"]  # w0 on 1 thread; 1 thread + 1 worker


def test_the_objective_carries_fed_and_its_interval_through_pickling():
    value = pickle.loads(pickle.dumps(_objective(123.5, True, 110.0, 131.0)))
    assert value == 123.5 and value.fed is True and (value.low, value.high) == (110.0, 131.0)
    assert math.isnan(pickle.loads(pickle.dumps(_objective(1.0, None))).low)
    assert Candidate(0, torch_threads=2).settings() == {
        keys.WORKERS_PARAM: 0,
        keys.TORCH_THREADS_PARAM: 2,
    }


# --- end to end, as a user types it ------------------------------------------------------------
@pytest.mark.slow
def test_an_emulated_sweep_names_the_fewest_fed_workers_in_the_parents_description(tmp_path):
    from tests.test_sweep_e2e import run_cli, sweep_runs

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    swept = ["-m", "bench.mode=emulated", "bench.step_ms=50", "loader.num_workers=0,2"]
    assert run_cli(swept, tmp_path, uri).returncode == 0
    _, (parent,), children = sweep_runs(uri)
    fed = {c.info.run_name: c.data.tags[keys.FED_TAG] for c in children}
    assert set(fed) == {"w0", "w2"} and set(fed.values()) <= {keys.FED, keys.STARVED}
    fewest = next((name for name in ("w0", "w2") if fed[name] == keys.FED), "none")
    tags = parent.data.tags
    assert tags[keys.WINNER_TAG] == fewest
    verdict = tags[keys.VERDICT_TAG]
    head = "No setting tried keeps" if fewest == "none" else f"{fewest} is the fewest workers"
    assert verdict.startswith(head) and "a 50 ms step (step_sync=step)" in verdict
    assert verdict in tags[keys.NOTE_TAG] and "| 50 ms | step |" in tags[keys.NOTE_TAG]


@pytest.mark.slow
def test_a_bad_step_is_one_line_and_exit_2(tmp_path):
    from tests.test_sweep_e2e import run_cli

    proc = run_cli(["bench.mode=emulated"], tmp_path, f"sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == 2
    (line,) = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "error:" in ln]
    assert "exactly one of bench.step_ms, bench.step_per_sample_ms and bench.step_from" in line


def test_the_step_keys_name_runs_briefly():
    from loaderbench.naming import label

    assert [label("bench.step_ms", 5.0), label("bench.step_per_sample_ms", 0.25)] == [
        "5ms",
        "0.25ms/sample",
    ]
    assert label("bench.step_from", "0123456789abcdef") == "from-01234567"
    assert [label("bench.step_sync", v) for v in ("step", "none")] == ["sync", "async"]
    assert label(keys.TORCH_THREADS_PARAM, 2) == "tt2"
