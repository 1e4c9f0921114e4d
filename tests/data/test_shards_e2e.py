"""End-to-end: a sweep over tar shards as a user types it, with and without the classic bug of an
IterableDataset that does not split its shards by worker."""

from __future__ import annotations

import pytest

from loaderbench import keys
from tests.test_sweep_e2e import check_sweep, run_cli, sweep_runs

pytestmark = pytest.mark.slow
SHARDS = ["dataset=shards", "dataset.per_shard=32"]  # 4 train shards of the 128 samples (TINY)


def child_history(client, run, key: str) -> list[float]:
    return [
        m.value
        for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
    ]


def test_a_shards_sweep_delivers_every_sample_once_and_trains_identically(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["-m", *SHARDS, "loader.num_workers=0,2", f"dataset.cache_dir={tmp_path}/cache"]
    assert run_cli(args, tmp_path, uri).returncode == 0
    client, parent, children = check_sweep(uri, n_finished=2)
    for child in children:
        assert child_history(client, child, keys.SAMPLES_SEEN) == [128.0]
        assert child_history(client, child, keys.DUPLICATE_SAMPLES) == [0.0]
        assert child_history(client, child, keys.MISSING_SAMPLES) == [0.0]
        assert child.data.tags[keys.EXACTLY_ONCE_TAG] == "ok"
    assert len({c.data.metrics[keys.SUMMARY_VAL_ACC] for c in children}) == 1
    assert parent.data.tags[keys.REPRO_TAG] == "identical"
    assert "not delivered exactly once" not in (tmp_path / "sweep" / "report.md").read_text()


def test_shards_not_split_by_worker_are_flagged_in_the_report(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["-m", *SHARDS, "dataset.split_by_worker=false", "loader.num_workers=0,2",
            f"dataset.cache_dir={tmp_path}/cache"]  # fmt: skip
    assert run_cli(args, tmp_path, uri).returncode == 0
    client, (parent,), children = sweep_runs(uri)
    by_name = {c.info.run_name: c for c in children}
    assert {c.info.status for c in children} == {"FINISHED"} and set(by_name) == {"w0", "w2"}
    assert child_history(client, by_name["w2"], keys.DUPLICATE_SAMPLES) == [128.0]
    assert child_history(client, by_name["w0"], keys.DUPLICATE_SAMPLES) == [0.0]
    assert (
        by_name["w2"]
        .data.tags[keys.EXACTLY_ONCE_TAG]
        .startswith(
            "epoch 0: 256 samples arrived where 128 were due (128 duplicates, 0 missing of 128)"
        )
    )
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "## ⚠ Samples not delivered exactly once" in report and "- **w2**: epoch 0" in report
    verdict = parent.data.tags[keys.VERDICT_TAG]
    assert verdict.startswith("Only one setting delivered every sample exactly once: w0 at ")
    assert verdict.endswith("Left out: w2 (samples not delivered exactly once).")
    assert parent.data.tags[keys.REPRO_TAG].startswith("mismatch")  # w2 trained on 2x the data
