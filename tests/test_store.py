"""The one way to the tracking store, against real (temporary) SQLite stores."""

from __future__ import annotations

import pytest

from loaderbench import keys, store, ui
from loaderbench.config import ConfigError


def test_tracking_uri_configured_else_environment_else_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = store.resolve_tracking_uri(None, tmp_path)
    assert default == f"sqlite:///{tmp_path.resolve() / 'outputs' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store.resolve_tracking_uri(None, tmp_path) == "http://127.0.0.1:5000"
    # relative SQLite paths are taken from the launch directory, not the job's
    assert store.resolve_tracking_uri("sqlite:///x/m.db", tmp_path) == (
        f"sqlite:///{(tmp_path / 'x' / 'm.db').resolve()}"
    )
    with pytest.raises(ConfigError, match=r"mlflow.tracking_uri=\./mlruns: a plain folder"):
        store.resolve_tracking_uri("./mlruns", tmp_path)


def test_ui_command_names_the_store():
    assert ui.ui_command("sqlite:////a/mlflow.db").startswith(
        "mlflow ui --backend-store-uri sqlite:////a/mlflow.db"
    )
    assert ui.ui_command("http://host:5000") == "open http://host:5000"


def test_a_missing_store_is_not_created_when_it_must_exist(tmp_path):
    with pytest.raises(store.NotInStore, match="no tracking store at"):
        store.open_store(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}", must_exist=True)
    assert not (tmp_path / "a").exists()


def test_experiment_created_once_with_artifacts_beside_the_database(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    client, exp_id = store.open_experiment(uri, "e")
    assert store.open_experiment(uri, "e")[1] == exp_id
    location = client.get_experiment(exp_id).artifact_location
    assert location == (tmp_path / "new" / "mlartifacts").resolve().as_uri()


def test_child_runs_all_pages_in_start_order(sqlite_uri):
    client, exp_id = store.open_experiment(sqlite_uri, "e")
    parent = client.create_run(exp_id, 1000, {keys.ROLE_TAG: keys.ROLE_SWEEP})
    statuses = ["FINISHED", "FAILED", "FINISHED", "KILLED", "FINISHED"]
    ids = []
    for i, status in enumerate(statuses):
        run = client.create_run(exp_id, 2000 + i, {keys.PARENT_TAG: parent.info.run_id})
        client.set_terminated(run.info.run_id, status)
        ids.append(run.info.run_id)
    client.delete_run(ids[4])
    found = store.child_runs(client, parent, page_size=2)
    assert [r.info.run_id for r in found] == ids  # deleted runs too
    finished = store.child_runs(client, parent, finished_only=True, page_size=1)
    assert [r.info.run_id for r in finished] == [ids[0], ids[2]]
    assert store.is_sweep(parent) and not store.is_sweep(finished[0])
    assert store.sweep_parent(client, parent.info.run_id).info.run_id == parent.info.run_id
    with pytest.raises(store.SweepNotFound, match="not a sweep parent"):
        store.sweep_parent(client, ids[0])


def test_metric_history_keeps_every_value_and_last_per_step_the_latest(sqlite_uri):
    client, exp_id = store.open_experiment(sqlite_uri, "e")
    run_id = client.create_run(exp_id).info.run_id
    for step, value, timestamp in [(1, 2.0, 10), (0, 1.0, 10), (1, 3.0, 20)]:
        client.log_metric(run_id, "m", value, timestamp=timestamp, step=step)
    history = store.metric_history(client, run_id, "m")
    assert history == {0: [1.0], 1: [2.0, 3.0]}
    assert store.last_per_step(history) == [1.0, 3.0]
    assert store.metric_history(client, run_id, "other") == {}


def test_text_artifacts_and_the_stored_config(sqlite_uri):
    client, exp_id = store.open_experiment(sqlite_uri, "e")
    run_id = client.create_run(exp_id).info.run_id
    assert store.read_text(client, run_id, keys.ERROR_ARTIFACT) is None
    assert store.run_config(client, run_id) is None
    client.log_text(run_id, "loader:\n  num_workers: 2\n", keys.CONFIG_ARTIFACT)
    assert store.run_config(client, run_id).loader.num_workers == 2
    with pytest.raises(store.NotInStore, match="not found"):
        store.get_run(client, "f" * 32)


def test_log_batch_splits_what_one_call_cannot_take(sqlite_uri):
    client, exp_id = store.open_experiment(sqlite_uri, "e")
    run_id = client.create_run(exp_id).info.run_id
    params = {f"p{i}": str(i) for i in range(250)}
    metrics = [(f"m{i}", float(i), 3) for i in range(1200)]
    store.log_batch(client, run_id, metrics=metrics, params=params, tags={"t": "v"})
    store.log_batch(client, run_id)  # nothing to log: no call, no error
    data = client.get_run(run_id).data
    assert data.params == params and data.tags["t"] == "v"
    assert len(data.metrics) == 1200 and data.metrics["m1199"] == 1199.0
    assert [m.step for m in client.get_metric_history(run_id, "m7")] == [3]
