"""bench.mode, warm-up and repeats: what each records, checked by structure, never by a clock.

Timing thresholds make flaky tests on a shared 2-core machine; instead a counting dataset shows
what each mode reads (model_only reads one batch, outside the clock, so it cannot wait for
data), and the logged keys show what each mode claims to have measured.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from loaderbench import keys, tracking
from loaderbench.config import ConfigError
from loaderbench.data import DatasetPair
from loaderbench.data.shapes import make_shapes
from loaderbench.experiment import run
from loaderbench.probe import probe_plan
from tests.helpers import run_in_memory

TRAIN_SIZE, VAL_SIZE, BATCH = 256, 64, 32  # as helpers.SMALL
MODEL_KEYS = ("loss/", "acc/", "summary/val_acc", "summary/train_loss")
VAL_KEYS = (keys.LOSS_VAL, keys.ACC_VAL, keys.SUMMARY_VAL_ACC)
READS: Counter[str] = Counter()  # split -> samples fetched (num_workers=0: this process)


class CountingDataset(Dataset):
    """Counts every sample read from ``base``: what a mode fetched, whatever its clocks say."""

    def __init__(self, base: Dataset, split: str):
        self.base, self.split = base, split

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        READS[self.split] += 1
        return self.base[index]


def counting_shapes(**kwargs) -> DatasetPair:
    """The shapes option with counted reads (``dataset._target_`` points here)."""
    pair = make_shapes(**kwargs)
    pair.train = CountingDataset(pair.train, "train")
    pair.val = CountingDataset(pair.val, "val")
    return pair


def _finite(tracker: tracking.InMemoryTracker) -> None:
    for key, values in tracker.metrics.items():
        assert all(math.isfinite(v) for _, v in values), key


@pytest.mark.parametrize(
    ("mode", "train_reads", "val_reads"),
    [
        ("train", TRAIN_SIZE, VAL_SIZE),  # every sample, then the evaluation
        ("loader_only", TRAIN_SIZE, 0),  # every sample, no model, no evaluation
        ("model_only", BATCH, 0),  # one batch, fetched before the clock, replayed
    ],
)
def test_each_mode_reads_what_it_claims_and_logs_its_keys(small_cfg, mode, train_reads, val_reads):
    READS.clear()
    cfg = small_cfg(
        f"bench.mode={mode}",
        "loader.num_workers=0",  # the counter lives in this process
        "dataset._target_=tests.test_modes.counting_shapes",
    )
    t = run_in_memory(cfg)
    # + 1: before the run, prepare() reads training sample 0 once: its shape is the model's
    # input, and the model is checked on it.
    assert (READS["train"], READS["val"]) == (train_reads + 1, val_reads)
    assert t.params["bench.mode"] == mode

    for key in (*keys.EPOCH_KEYS, keys.SUMMARY_SAMPLES_PER_S, keys.SUMMARY_DATA_WAIT):
        assert key in t.metrics, key
    _finite(t)
    # Every mode counts a full epoch of samples (model_only replays its batch len(loader) times),
    # so throughputs are comparable: samples/s x epoch seconds = the training set.
    samples = t.last(keys.SAMPLES_PER_S) * t.last(keys.EPOCH_S)
    assert samples == pytest.approx(TRAIN_SIZE, rel=1e-9)
    assert 0 <= t.last(keys.DATA_WAIT_FRACTION) <= 1
    assert t.last(keys.DATA_WAIT_S) + t.last(keys.COMPUTE_S) == pytest.approx(t.last(keys.EPOCH_S))

    logged = set(t.metrics)
    if mode == "train":
        assert {keys.LOSS_TRAIN, keys.ACC_TRAIN, *VAL_KEYS} <= logged
        assert keys.SUMMARY_TRAIN_LOSS in logged
    elif mode == "loader_only":  # no model ran: nothing model-shaped may be claimed
        assert not [k for k in logged if k.startswith(MODEL_KEYS)]
    else:  # a model trained (on one batch), but nothing was evaluated
        assert {keys.LOSS_TRAIN, keys.ACC_TRAIN} <= logged
        assert not logged & set(VAL_KEYS)


def test_warmup_batches_are_recorded_and_excluded(small_cfg):
    t = run_in_memory(small_cfg("bench.warmup_batches=2"))
    assert t.last(keys.SUMMARY_WARMUP_BATCHES) == 2
    assert t.last(keys.WARMUP_S) > 0  # some time passed: a fact, not a threshold
    assert t.last(keys.WARMUP_S) < t.last(keys.EPOCH_S)  # 2 of 8 batches
    assert math.isfinite(t.last(keys.STEADY_SAMPLES_PER_S))
    assert math.isfinite(t.last(keys.SUMMARY_STEADY))


def test_unknown_mode_names_the_key_and_records_nothing(small_cfg):
    tracker = tracking.InMemoryTracker()
    with pytest.raises(ConfigError, match=r"bench\.mode=foo") as err:
        run(small_cfg("bench.mode=foo"), tracker=tracker)
    assert "train" in str(err.value) and "loader_only" in str(err.value)  # the fix is named
    assert tracker.status is None and not tracker.metrics


def test_repeat_is_appendable_and_logged_as_a_param(small_cfg):
    # The report groups runs that differ only in bench.repeat; `+bench.repeat=0,1,2` on the
    # command line must compose although the bench group has a dataclass schema.
    cfg = small_cfg("+bench.repeat=1", "bench.mode=loader_only")
    assert cfg.bench.repeat == 1
    t = run_in_memory(cfg)
    assert t.params["bench.repeat"] == 1


@pytest.mark.parametrize("mode", ["train", "loader_only"])
def test_a_probe_reads_n_batches_an_epoch_and_projects(small_cfg, mode):
    READS.clear()
    cfg = small_cfg(
        f"bench.mode={mode}",
        "bench.probe_batches=4",  # of 8 batches an epoch
        "trainer.epochs=2",
        "loader.num_workers=0",
        "dataset._target_=tests.test_modes.counting_shapes",
    )
    t = run_in_memory(cfg)
    val_reads = 2 * VAL_SIZE if mode == "train" else 0  # 2 val batches: fewer than 4
    assert (READS["train"], READS["val"]) == (2 * 4 * BATCH + 1, val_reads)  # + prepare()'s
    assert [s for s, _ in t.metrics[keys.SAMPLES_PER_S]] == [0, 1]
    samples = t.last(keys.SAMPLES_PER_S) * t.last(keys.EPOCH_S)
    assert samples == pytest.approx(4 * BATCH, rel=1e-9)  # what the probe measured, not more
    assert (set(VAL_KEYS) <= set(t.metrics)) == (mode == "train")  # the contract's keys
    assert math.isfinite(t.last(keys.SUMMARY_PROJECTED)) and t.last(keys.SUMMARY_PROJECTED) > 0
    assert t.tags[keys.NOTE_TAG].startswith("probe: ")


def test_a_probe_spans_the_loaders_burst_and_tail_and_its_sampler_ends_it(small_cfg):
    # 1 worker x prefetch 2: 2 batches in flight at each end and 4 between: an 8-batch probe
    # of a 16-batch epoch, ended by the sampler (the workers run out of work as in a full epoch)
    cfg = small_cfg(
        "bench.mode=loader_only",
        "bench.probe_batches=4",
        "loader.num_workers=1",
        "dataset.size=512",
        "trainer.epochs=2",
    )
    t = run_in_memory(cfg)
    assert t.params["effective.probe_batches"] == 8
    assert t.tags["effective.probe_batches.reason"] == (
        "the loader's 2 batches in flight at each end (its start-up burst, its tail) and 4 between"
    )
    assert t.last(keys.SAMPLES_PER_S) * t.last(keys.EPOCH_S) == pytest.approx(8 * BATCH)
    assert t.tags[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK  # each of the 8 batches once
    assert math.isfinite(t.last(keys.SUMMARY_PROJECTED))
    # where the burst and the tail leave no shorter probe, the probe is the whole epoch
    bench = OmegaConf.create({"probe_batches": 4, "probe_share": 0.25})
    assert probe_plan(bench, 8, in_flight=4) == (
        8,
        "the whole 8-batch epoch: the loader's 4 batches in flight at each end (its start-up "
        "burst, its tail) and 4 between",
    )
    assert probe_plan(bench, 100, in_flight=0) == (4, "")  # 25 of 100 allowed: as asked


def test_a_probe_too_short_to_project_names_the_key(small_cfg):
    with pytest.raises(ConfigError, match=r"bench\.probe_batches=3: must be at least 4"):
        run(small_cfg("bench.probe_batches=3"), tracker=tracking.InMemoryTracker())
