"""A real run into a temporary SQLite MLflow store, read back with MLflow's own client."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from loaderbench import keys, tracking
from loaderbench.config import ConfigError
from loaderbench.experiment import Launch, run
from tests.helpers import compose_config

EPOCH_KEYS = [*keys.EPOCH_KEYS, *keys.EPOCH_MODEL_KEYS]
SUMMARY_KEYS = [*keys.SUMMARY_KEYS, *keys.SUMMARY_MODEL_KEYS]
DESIGN_KEYS = {  # spelled out here as DESIGN.md spells them: the contract, not the code
    "throughput/samples_per_s",
    "time/epoch_s",
    "time/data_wait_s",
    "time/compute_s",
    "stall/data_wait_fraction",
    "loss/train",
    "acc/train",
    "loss/val",
    "acc/val",
    "summary/samples_per_s",
    "summary/steady_samples_per_s",
    "summary/first_batch_s",
    "summary/data_wait_fraction",
    "summary/val_acc",
    "summary/train_loss",
    "summary/wall_s",
    "memory/peak_rss_mb",
}


def test_key_constants_match_the_design():
    assert set(EPOCH_KEYS) | set(SUMMARY_KEYS) == DESIGN_KEYS


def test_run_records_every_contract_key_in_sqlite(small_cfg, sqlite_uri):
    cfg = small_cfg("trainer.epochs=2", "mlflow.enabled=true", f"mlflow.tracking_uri={sqlite_uri}")
    samples_per_s = run(cfg, launch=Launch(overrides=["loader.num_workers=0"]))
    assert math.isfinite(samples_per_s) and samples_per_s > 0

    client = MlflowClient(tracking_uri=sqlite_uri)
    (found,) = client.search_runs([client.get_experiment_by_name("loaderbench").experiment_id])
    assert found.info.status == "FINISHED"
    assert found.info.run_name == "w0-bs32 num_workers=0" or found.info.run_name.startswith(
        "w0-bs32"
    )
    metrics = found.data.metrics
    for key in DESIGN_KEYS:
        assert key in metrics, key
        assert math.isfinite(metrics[key]), key
    for key in EPOCH_KEYS:
        steps = [m.step for m in client.get_metric_history(found.info.run_id, key)]
        assert steps == [0, 1], key
    assert metrics["summary/samples_per_s"] == pytest.approx(samples_per_s)
    assert 0 <= metrics["stall/data_wait_fraction"] <= 1

    params = found.data.params
    assert params["loader.num_workers"] == "0"
    assert params["dataset.name"] == "shapes"
    assert params["effective.pin_memory"] == "False"
    assert params["data.fingerprint"].startswith("shapes-")
    tags = found.data.tags
    for tag in (
        "env.torch",
        "env.python",
        "env.platform",
        "env.cpu_count",
        "env.git_sha",
        "env.hostname",
        "env.device_name",
        "loaderbench.overrides",
    ):
        assert tags[tag], tag
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert "config.yaml" in artifacts
    # artifacts live beside the database, never in ./mlruns
    assert found.info.artifact_uri.startswith("file://")
    assert "mlartifacts" in found.info.artifact_uri


def test_metrics_are_logged_once_per_epoch_not_per_step(small_cfg):
    tracker = tracking.InMemoryTracker()
    run(small_cfg("trainer.epochs=3", "dataset.size=320"), tracker=tracker)
    # 10 steps per epoch, yet one call per epoch plus one for the summary
    assert tracker.metric_calls == 3 + 1
    assert [step for step, _ in tracker.metrics["loss/train"]] == [0, 1, 2]
    assert tracker.status == "FINISHED"
    # 10 steps an epoch: enough for the run's own noise interval, which holds its figure
    low, high = tracker.last(keys.SUMMARY_STEADY_LOW), tracker.last(keys.SUMMARY_STEADY_HIGH)
    assert 0 < low <= high
    # the run's description in the MLflow UI: its headline figures in one line
    note = tracker.tags[keys.NOTE_TAG]
    assert note.startswith(f"{tracker.last(keys.SUMMARY_SAMPLES_PER_S):.0f} samples/s")
    assert "val acc" in note and "\n" not in note


def test_pin_memory_without_accelerator_is_recorded_as_ignored(small_cfg):
    tracker = tracking.InMemoryTracker()
    run(small_cfg("loader.pin_memory=true"), tracker=tracker)
    assert tracker.params["loader.pin_memory"] is True
    assert tracker.params["effective.pin_memory"] is False
    assert "accelerator" in tracker.tags["effective.pin_memory.reason"]


def test_bad_value_fails_before_any_run_is_opened(small_cfg, sqlite_uri):
    cfg = small_cfg(
        "loader.num_workers=-1", "mlflow.enabled=true", f"mlflow.tracking_uri={sqlite_uri}"
    )
    with pytest.raises(ConfigError, match=r"loader\.num_workers=-1"):
        run(cfg, launch=Launch())
    client = MlflowClient(tracking_uri=sqlite_uri)
    experiment = client.get_experiment_by_name("loaderbench")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_failure_in_a_sweep_job_is_recorded_and_the_sweep_goes_on(small_cfg, sqlite_uri, tmp_path):
    cfg = small_cfg(
        "loader.num_workers=-1", "mlflow.enabled=true", f"mlflow.tracking_uri={sqlite_uri}"
    )
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    result = run(cfg, launch=Launch(multirun=True, output_dir=str(job_dir)))
    assert math.isnan(result)  # returned, not raised: the next job runs
    assert "loader.num_workers=-1" in (job_dir / "error.txt").read_text()
    client = MlflowClient(tracking_uri=sqlite_uri)
    (found,) = client.search_runs([client.get_experiment_by_name("loaderbench").experiment_id])
    assert found.info.status == "FAILED"
    assert "error.txt" in {a.path for a in client.list_artifacts(found.info.run_id)}


@pytest.mark.slow
def test_default_run_learns_well_above_chance():
    """The default dataset must make accuracy comparisons meaningful (>= 3x chance)."""
    tracker = tracking.InMemoryTracker()
    cfg = compose_config(["trainer.progress=false", "mlflow.enabled=false"])
    run(cfg, tracker=tracker)
    chance = 1 / cfg.dataset.num_classes
    assert tracker.last("summary/val_acc") >= 3 * chance
