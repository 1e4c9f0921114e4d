"""sweep=tune's search, on the real composed config: the space, the stages and what they
launch, the confirming runs and the bad input. The runs themselves: test_sweep_e2e.py (slow)."""

from __future__ import annotations

import math

import pytest

from hydra_plugins import loaderbench_tune as sweeper
from loaderbench import keys, tune
from loaderbench.config import ConfigError
from loaderbench.tune import Candidate, Search, Trial
from tests.helpers import compose_config


def tune_cfg(*overrides: str):
    return compose_config(["sweep=tune", *overrides])


def space(*overrides: str, pinned=None, accelerator=False):
    return tune.build_space(tune_cfg(*overrides), pinned or {}, accelerator)


def test_the_grid_is_every_distinct_setting_of_the_searched_knobs():
    sp = space("tune.max_workers=4", "tune.contexts=[fork,spawn,forkserver]", "tune.backends=false")
    grid = sp.grid()
    # num_workers=0 once (torch ignores the worker knobs there), then 4 x 3 x 2 x 2
    assert len(grid) == len(set(grid)) == 1 + 4 * 3 * 2 * 2
    assert sum(c.workers == 0 for c in grid) == 1
    # loader threads add 4 worker counts x 2 prefetch factors (no context, nothing persists)
    both = space(
        "tune.max_workers=4", "tune.contexts=[fork,spawn,forkserver]", "tune.backends=true"
    )
    assert len(both.grid()) == len(set(both.grid())) == 1 + 4 * 3 * 2 * 2 + 4 * 2


def test_knobs_that_cannot_matter_are_not_searched():
    one_epoch = space("trainer.epochs=1")  # persistence only matters from the second epoch
    assert one_epoch.persistent == [False]
    assert space().pin == [None]  # no accelerator: torch ignores pin_memory
    assert space(accelerator=True).pin == [False, True]
    assert space().batch_sizes == [None]  # batch size changes training: only when asked
    assert space("tune.batch_size=true", "loader.batch_size=64").batch_sizes == [32, 64, 128]


def test_values_on_the_command_line_narrow_the_search():
    cfg = tune_cfg()
    fixed, pinned = sweeper.split_arguments(
        ["sweep=tune", "loader.num_workers=0,2", "loader.multiprocessing_context=spawn"], cfg
    )
    assert fixed == ["sweep=tune"]
    sp = tune.build_space(cfg, pinned, accelerator=False)
    assert sp.workers == [0, 2] and sp.contexts == ["spawn"]


@pytest.mark.parametrize("arg", ["dataset.size=128,256", "loader.batch_size=32,64"])
def test_a_sweep_of_another_key_is_refused_naming_it(arg):
    with pytest.raises(ConfigError, match=arg.split("=")[0].replace(".", r"\.")) as err:
        sweeper.split_arguments(["sweep=tune", arg], tune_cfg())
    assert "grid sweep" in str(err.value)


def test_one_batch_size_with_tune_batch_size_is_the_centre_and_pin_memory_can_be_fixed():
    cfg = tune_cfg("tune.batch_size=true", "loader.batch_size=128")
    args = [
        "sweep=tune",
        "tune.batch_size=true",
        "loader.batch_size=128",
        "loader.pin_memory=false",
    ]
    fixed, pinned = sweeper.split_arguments(args, cfg)
    assert fixed == ["sweep=tune", "tune.batch_size=true"]  # each trial sets its batch size
    sp = tune.build_space(cfg, pinned, accelerator=True)
    assert sp.batch_sizes == [64, 128, 256] and sp.pin == [False]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tune.trials=3", r"tune\.trials=3: must exceed the 3 confirming runs"),
        ("tune.budget_s=0", r"tune\.budget_s=0(\.0)?: must be above 0"),
        ("tune.confirm_within=1.0", r"tune\.confirm_within=1\.0: a fraction"),
        ("tune.probe_batches=2", r"tune\.probe_batches=2: must be at least 4"),
    ],
)
def test_a_search_that_could_not_run_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        sweeper.check(tune_cfg(override), ["sweep=tune", override])


def test_a_probe_is_the_users_job_capped_and_named_by_what_it_sets():
    fixed = ["sweep=tune", "trainer.epochs=2"]
    cand = Candidate(2, "fork", True, 4)
    args = sweeper.trial_overrides(fixed, cand, 20)
    assert args[:2] == fixed
    assert "loader.num_workers=2" in args and "loader.persistent_workers=true" in args
    assert args[-1] == f"{keys.PROBE_PARAM}=20"
    assert not any(a.startswith("loader.batch_size") for a in args)  # not tuned: untouched
    assert cand.label == "w2-fork-persist-pf4"
    w0 = sweeper.trial_overrides(fixed, Candidate(0), None)  # a full run, no worker knobs
    assert w0 == [*fixed, "loader.num_workers=0", f"{keys.PROBE_PARAM}=null"]


def _search(values: dict[Candidate, float], *overrides: str, **kw) -> Search:
    overrides = overrides or ("tune.backends=false",)
    s = Search(space("tune.max_workers=2", "tune.contexts=[fork,spawn]", *overrides), 20, **kw)
    s.done = [Trial(c, True, v) for c, v in values.items()]
    return s


def test_the_stages_follow_the_fastest_setting_with_workers():
    s = _search({Candidate(0): 900.0})
    first = s.stages()[0][1](s)
    # the range is covered early (the largest count, then halves), should the cost cap bite
    assert [c.label for c in first] == ["w0", "w2-fork-persist-pf2", "w1-fork-persist-pf2"]
    s = _search({Candidate(0): 900.0, first[2]: 500.0, first[1]: 800.0})
    # prefetching before start-up: a cost cap stops the dearest stage (spawn starts) first
    assert [name for name, _ in s.stages()] == ["workers", "prefetch", "start-up"]
    prefetch = s.fresh(s.stages()[1][1](s))
    assert [c.label for c in prefetch] == ["w2-fork-persist-pf4"]
    startup = s.fresh(s.stages()[2][1](s))  # the other context, then the other persistence
    assert [c.label for c in startup] == ["w2-spawn-persist-pf2", "w2-fork-nopersist-pf2"]


def test_full_runs_confirm_the_best_the_close_runner_up_and_the_other_side():
    w0, w1, w2 = Candidate(0), Candidate(1, "fork", True, 2), Candidate(2, "fork", True, 2)
    close = _search({w0: 700.0, w1: 950.0, w2: 1000.0})
    assert close.to_confirm() == [w2, w1, w0]  # w1 within 10% of w2; w0 the baseline
    far = _search({w0: 1000.0, w1: 500.0, w2: 600.0})
    assert far.to_confirm() == [w0, w2]  # the best with workers answers "can it be 0?"
    failed = _search({w0: math.nan, w2: 600.0})
    assert failed.to_confirm() == [w2]  # a failed trial is never confirmed


def test_a_close_simpler_full_run_and_the_fastest_run_once_more():
    w0, w2, t2 = Candidate(0), Candidate(2, "fork", True, 2), Candidate(2, backend=keys.THREADS)

    def full(values: dict[Candidate, float]) -> Search:
        s = _search({})
        s.done = [Trial(c, False, v) for c, v in values.items()]
        return s

    # within 10%: a tie of single runs, so repeat both, the simpler first
    assert full({w0: 950.0, w2: 1000.0}).to_settle() == [w0, w2]
    # every simpler run tied, the simplest first (processes before threads): the report keeps
    # the simplest of those still tied, so a single run left out would decide
    assert full({w0: 950.0, w2: 1000.0, t2: 1040.0}).to_settle() == [w0, w2, t2]
    assert full({w0: 700.0, w2: 1000.0, t2: 1040.0}).to_settle() == [w2, t2]  # w0 told apart
    assert full({w0: 700.0, w2: 1000.0}).to_settle() == []  # 30% apart: the rule tells them
    assert full({w0: 1000.0, w2: 990.0}).to_settle() == []  # a tie keeps the fastest anyway
    assert _search({w0: 950.0, w2: 1000.0}).to_settle() == []  # probes decide nothing
    # 14% apart, but the short runs' intervals overlap: the report would tie them, so settle
    wide = full({w0: 230.0, w2: 266.0})
    (t0, t1) = wide.done
    t0.low, t0.high, t1.low, t1.high = 194.0, 249.0, 242.0, 290.0
    assert wide.to_settle() == [w0, w2]
    t0.high = 240.0  # below the fastest's low: the rule tells them apart
    assert wide.to_settle() == []


def test_the_trial_budget_keeps_room_for_the_confirming_runs():
    s = _search({Candidate(0): 1.0, Candidate(1, "fork", True, 2): 1.0}, trials=6)
    assert s.probes_left(reserve=3) == 1
    assert _search({}, budget_s=0.0).probes_left(reserve=3) == 0
    assert _search({}).probes_left(reserve=3) is None  # no limit


def test_the_tuned_keys_name_the_children():
    assert tune.tuned_keys(tune_cfg("tune.backends=false")) == [
        keys.WORKERS_PARAM,
        "loader.multiprocessing_context",
        "loader.persistent_workers",
        "loader.prefetch_factor",
        keys.PROBE_PARAM,
    ]


def test_loader_threads_join_each_worker_count_and_their_rival_is_confirmed():
    s = _search({}, "tune.backends=true")
    first = s.stages()[0][1](s)
    labels = [c.label for c in first]
    assert labels == ["w0", "w2-fork-persist-pf2", "t2-pf2", "w1-fork-persist-pf2", "t1-pf2"]
    t2, w2 = first[2], first[1]
    assert t2.settings() == {
        keys.BACKEND_PARAM: "threads",
        keys.WORKERS_PARAM: 2,
        "loader.prefetch_factor": 2,
    }  # noqa: E501
    s = _search({Candidate(0): 400.0, w2: 600.0, t2: 1000.0}, "tune.backends=true")
    assert s.fresh(s.stages()[1][1](s))[0].label == "t2-pf4"  # prefetch follows the fastest
    assert s.to_confirm() == [t2, Candidate(0), w2]  # processes or threads: both in full
    assert tune.tuned_keys(tune_cfg("tune.backends=true"))[0] == keys.BACKEND_PARAM
    args = sweeper.trial_overrides(["sweep=tune"], t2, 20, 0.25)
    assert "loader.backend=threads" in args and "bench.probe_share=0.25" in args


def test_the_cost_cap_keeps_the_search_within_its_share_of_the_grid():
    w0, w2 = Candidate(0), Candidate(2, "fork", True, 2)
    s = _search({}, cost_share=0.15)  # a grid of 1 + 2 x 2 x 2 x 2 = 17 runs
    s.done = [Trial(w0, False, 500.0, wall_s=10.0)]  # the first run, in full: 10 s
    # 10 s spent, + 10 s kept for a settle's repeat of it, within 0.15 of 170 s
    assert s.grid_s() == 17 * 10.0 and s.within_cost()
    s.done.append(Trial(w2, True, 1000.0, wall_s=8.0))  # a probe nearly as dear as a full run
    # the grid's runs go faster at 1000/s: ~85 s; 10 + 8 spent, + 8 next, + w2's full run 10
    # and the settle's repeats of both, 20
    assert s.grid_s() == 17 * 10.0 * 0.5 and not s.within_cost()
    assert s.probes_left(reserve=3) == 0
    s.cost_share = 57 / 85  # what that takes, and a second to spare
    assert s.within_cost()
    s.lead_s = 2.0  # the command's start took 2 s: its report and exit are reserved as much
    assert not s.within_cost()
    assert _search({}, cost_share=None).within_cost()


def test_the_grid_estimate_counts_each_spawn_workers_start():
    s = _search({}, cost_share=0.15)  # contexts fork and spawn, 1 or 2 workers
    s.epochs, s.startup_s = 2, 3.0  # a fresh interpreter's imports: 3 s
    s.done = [Trial(Candidate(0), False, 500.0, wall_s=10.0)]
    per_slot = [math.ceil(w / s.space.cores) for w in (1, 2)]  # as many at a time as the cores
    # spawn: the training and the validation loader, once persistent, else every epoch
    assert s.start_s(Candidate(2, "spawn", False, 2)) == 2 * 2 * 3.0 * per_slot[1]
    assert s.start_s(Candidate(2, "spawn", True, 2)) == 2 * 3.0 * per_slot[1]
    assert s.start_s(Candidate(2, "fork", False, 2)) == 0.0  # forked in milliseconds
    assert s.start_s(Candidate(2, backend=keys.THREADS)) == 0.0
    # the 8 spawn runs of the grid (2 worker counts x persistence x 2 prefetch factors)
    assert s.grid_s() == 17 * 10.0 + 2 * (4 + 2) * 3.0 * sum(per_slot)


def test_a_spawn_trial_and_its_forked_twin_correct_a_long_import_timing():
    s = _search({}, cost_share=0.15)
    s.epochs, s.startup_s = 2, 8.0  # the one timing ran long
    w0, fork, spawn = Candidate(0), Candidate(2, "fork", True, 2), Candidate(2, "spawn", True, 2)
    s.done = [Trial(w0, False, 500.0, wall_s=10.0), Trial(spawn, True, 300.0, wall_s=16.0)]
    assert s.start_each_s() == 8.0  # no forked twin yet: the timing stands
    s.done.append(Trial(fork, True, 450.0, wall_s=5.0))
    # 11 s more, for the training and the validation loader's start: 5.5 s each
    assert s.starts(spawn) == 2 and s.start_each_s() == 5.5
    assert s.start_s(Candidate(2, "spawn", False, 2)) == 2 * 2 * 5.5
    s.startup_s = 4.0  # a timing below what the trials showed stands: both err low
    assert s.start_each_s() == 4.0
    s.startup_s = math.nan  # not timed: the trials' figure alone
    assert s.start_each_s() == 5.5
    s.done[2] = Trial(fork, True, 450.0, wall_s=17.0)  # the twin ran longer: nothing shown
    assert math.isnan(s.start_each_s()) and s.start_s(spawn) == 0.0


@pytest.mark.slow  # a fresh interpreter importing torch: seconds
def test_a_spawn_workers_start_is_timed_with_the_datasets_own_module():
    cfg = tune_cfg("dataset=custom", "dataset.target=json.JSONDecoder")
    assert 0.0 < sweeper.worker_start_s(cfg) < 120.0
    assert math.isfinite(sweeper.worker_start_s(tune_cfg()))  # no dataset.target: built-ins
