"""The trackers: one protocol, three implementations, and the MLflow tracker's guards."""

from __future__ import annotations

import logging

import pytest

from loaderbench import keys, store
from loaderbench.tracking import InMemoryTracker, MlflowTracker, NullTracker, Tracker, flatten


@pytest.mark.parametrize("cls", [NullTracker, InMemoryTracker])
def test_trackers_follow_the_protocol(cls):
    tracker = cls()
    assert isinstance(tracker, Tracker)
    tracker.start(run_name="r", params={"a": 1}, tags={"t": "v"})
    tracker.log_metrics({"m": 1.0}, step=0)
    tracker.log_params({"b": 2})
    tracker.log_text("text", "f.txt")
    tracker.end("FINISHED")
    assert tracker.run_id is None and tracker.where()


def test_null_tracker_says_tracking_is_off():
    assert "mlflow.enabled=false" in NullTracker().where()


def test_in_memory_tracker_keeps_everything():
    tracker = InMemoryTracker()
    tracker.start(run_name="r", params={"a": 1}, tags={"t": "v"})
    tracker.log_metrics({"m": 1.0, "bad": "x"}, step=0)
    tracker.log_metrics({"m": 2.0}, step=1)
    tracker.log_text("text", "f.txt")
    tracker.end("FAILED")
    assert (tracker.run_name, tracker.params, tracker.tags) == ("r", {"a": 1}, {"t": "v"})
    assert tracker.metrics == {"m": [(0, 1.0), (1, 2.0)]} and tracker.last("m") == 2.0
    assert (tracker.metric_calls, tracker.texts, tracker.status) == (2, {"f.txt": "text"}, "FAILED")


def test_flatten_gives_dotted_params():
    tree = {"loader": {"num_workers": 2, "extra": {}}, "seed": 0, "l": [1, 2]}
    assert flatten(tree) == {"loader.num_workers": 2, "loader.extra": {}, "seed": 0, "l": [1, 2]}


def test_mlflow_tracker_guards_long_values_and_non_numbers(sqlite_uri, caplog):
    tracker = MlflowTracker(sqlite_uri, "e", parent_run_id="p" * 32)
    assert isinstance(tracker, Tracker)
    params = {f"p{i}": i for i in range(150)} | {"long": "x" * 7000, "none": None}
    tracker.start(run_name="guarded", params=params, tags={"t": "y" * 9000})
    with caplog.at_level(logging.WARNING, logger="loaderbench.tracking"):
        tracker.log_metrics({"m": 1, "bad": "not a number"}, step=2)
    tracker.log_text("hello", "note.txt")
    tracker.end("FINISHED")

    client = store.open_store(sqlite_uri, must_exist=True)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "guarded"
    assert run.data.tags[keys.PARENT_TAG] == "p" * 32
    assert len(run.data.params) == 152 and run.data.params["none"] == "null"
    assert run.data.params["long"].endswith("...[truncated]")
    assert len(run.data.params["long"]) <= MlflowTracker.PARAM_LIMIT
    assert len(run.data.tags["t"]) <= MlflowTracker.TAG_LIMIT
    assert run.data.metrics == {"m": 1.0} and "bad" in caplog.text
    assert [m.step for m in client.get_metric_history(tracker.run_id, "m")] == [2]
    assert store.read_text(client, tracker.run_id, "note.txt") == "hello"
    assert tracker.run_id in tracker.where() and "mlflow ui" in tracker.where()
