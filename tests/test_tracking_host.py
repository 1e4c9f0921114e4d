"""The tracking process: a job's tracker and a sweep's parent run live there, so the process
that forks DataLoader workers never holds MLflow (loaderbench.tracking_host)."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys

import psutil
import pytest

from loaderbench import keys, store, tracking_host
from loaderbench.config import ConfigError
from loaderbench.resources import _descendants
from loaderbench.tracking import Tracker
from loaderbench.tracking_host import HostedTracker
from tests.helpers import ROOT, still_running


def _raise_config_error(key: str) -> None:
    raise ConfigError(f"{key} is wrong: set it right")


def _raise_foreign() -> None:
    import mlflow.exceptions

    raise mlflow.exceptions.MlflowException("the store said no")


def _warn(text: str) -> str:
    logging.getLogger("loaderbench.tracking").warning("from the tracking process: %s", text)
    return os.environ.get("LOADERBENCH_TEST_VALUE", "unset")


def test_a_hosted_tracker_records_the_run_from_the_tracking_process(sqlite_uri, tmp_path):
    tracker = HostedTracker(sqlite_uri, "e", parent_run_id="p" * 32, offline_dir=tmp_path)
    assert isinstance(tracker, Tracker)
    tracker.start(run_name="hosted", params={"loader.num_workers": 2}, tags={"t": "v"})
    tracker.log_metrics({keys.SAMPLES_PER_S: 512.0, "bad": "not a number"}, step=1)
    tracker.log_text("hello", "note.txt")
    tracker.set_tags({keys.NOTE_TAG: "done"})
    tracker.end("FINISHED")
    host = tracking_host.host()
    assert host.proc.pid in {p.pid for p in psutil.Process().children()}
    assert host.proc.pid not in _descendants(os.getpid())  # the tool's, not the job's

    run = store.open_store(sqlite_uri, must_exist=True).get_run(tracker.run_id)
    assert (run.info.status, run.info.run_name) == ("FINISHED", "hosted")
    assert run.data.params == {"loader.num_workers": "2"}
    assert run.data.tags[keys.PARENT_TAG] == "p" * 32 and run.data.tags[keys.NOTE_TAG] == "done"
    assert run.data.metrics == {keys.SAMPLES_PER_S: 512.0}
    assert tracker.run_id in tracker.where()


def test_errors_logs_and_the_environment_cross_over(monkeypatch, caplog):
    with pytest.raises(ConfigError, match="loader.timeout is wrong"):  # the project's own error
        tracking_host.call(_raise_config_error, "loader.timeout")
    # MLflow's own exception does not unpickle without MLflow: its type and words instead
    with pytest.raises(tracking_host.HostedError, match="MlflowException: the store said no"):
        tracking_host.call(_raise_foreign)
    monkeypatch.setenv("LOADERBENCH_TEST_VALUE", "set after the process started")
    with caplog.at_level(logging.WARNING, logger="loaderbench.tracking"):
        assert tracking_host.call(_warn, "a warning") == "set after the process started"
    assert "from the tracking process: a warning" in caplog.text
    monkeypatch.delenv("LOADERBENCH_TEST_VALUE")
    assert tracking_host.call(_warn, "again") == "unset"


def test_a_handle_pickled_into_another_process_points_at_nothing(sqlite_uri, tmp_path):
    """submitit pickles the launcher with the sweep's callback, which holds the parent run."""
    tracker = HostedTracker(sqlite_uri, "e", offline_dir=tmp_path)
    copy = pickle.loads(pickle.dumps(tracker))
    with pytest.raises(tracking_host.HostGone, match="another process's tracking process"):
        copy.log_params({"a": 1})


def test_the_tracking_process_outlives_a_stop_signal_and_ends_with_its_socket():
    host = tracking_host.host()
    for sig in ("SIGINT", "SIGTERM"):  # a stop reaches the group: the run must still be recorded
        host.proc.send_signal(getattr(signal, sig))
    assert tracking_host.call(os.getpid) == host.proc.pid
    tracking_host.close()
    assert host.proc.returncode == 0 and not still_running([host.proc.pid])
    assert tracking_host.call(os.getpid) != host.proc.pid  # the next use starts another


def test_where_the_tracking_process_cannot_start_the_run_is_recorded_from_here(
    sqlite_uri, tmp_path, monkeypatch, caplog
):
    tracking_host.close()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    monkeypatch.setattr(tracking_host, "_unavailable", None)
    with caplog.at_level(logging.WARNING, logger="loaderbench.tracking_host"):
        tracker = HostedTracker(sqlite_uri, "e", offline_dir=tmp_path)
        tracker.start(run_name="local", params={}, tags={})
        tracker.end("FINISHED")
        assert tracking_host.call(os.getpid) == os.getpid()
    assert caplog.text.count("the tracking process could not start (FileNotFoundError") == 1
    run = store.open_store(sqlite_uri, must_exist=True).get_run(tracker.run_id)
    assert (run.info.status, run.info.run_name) == ("FINISHED", "local")


@pytest.mark.slow
def test_a_jobs_process_never_imports_mlflow(tmp_path):
    """A single run and a sweep, with workers forked every epoch: MLflow, pandas and SQLAlchemy
    stay out of the process that forks them, and the runs are recorded."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    probe = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('HELD', sorted({m.split('.')[0] for m in sys.modules}"
        " & {'mlflow', 'pandas', 'sqlalchemy'})))\n"
        "sys.argv = ['run.py', *sys.argv[1:]]\n"
        "runpy.run_path('run.py', run_name='__main__')\n"
    )
    common = ["bench.mode=loader_only", "dataset.size=256", "trainer.epochs=2"]
    common += ["trainer.progress=false", f"mlflow.tracking_uri={uri}"]
    for extra in (["loader.num_workers=2"], ["-m", "loader.num_workers=0,2"]):
        sweep = [f"hydra.sweep.dir={tmp_path}/sweep"] if "-m" in extra else []
        out = subprocess.run(
            [sys.executable, "-c", probe, *extra, *common, *sweep],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert "HELD []" in out.stdout, out.stdout[-2000:]
    runs = store.open_store(uri, must_exist=True).search_runs(["1"])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4  # a run, a sweep's 2 and parent
