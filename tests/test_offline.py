"""A tracking server that goes away mid-run loses nothing: the journal, its upload into a real
store, and (slow) a real `mlflow server` stopped under a running job and brought back."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from loaderbench import keys, offline, store
from loaderbench.tracking import MlflowTracker
from tests.helpers import ROOT, Cut, MlflowServer, free_port, job_env


def _journal(uri: str) -> offline.Journal:
    journal = offline.Journal(
        tracking_uri=uri, experiment="offline", run_name="w0", tags={"loaderbench.role": "job"}
    )
    journal.run_id = "0" * 32  # a run the store has never seen
    journal.ops += [
        journal.batch(params={"loader.num_workers": "0"}),
        journal.text("seed: 0\n", keys.CONFIG_ARTIFACT),
        journal.batch(metrics=[(keys.SAMPLES_PER_S, 100.0, 0), (keys.SAMPLES_PER_S, 120.0, 1)]),
        journal.end("FINISHED"),
    ]
    return journal


def test_an_offline_record_uploads_into_a_store_that_never_saw_the_run(tmp_path, sqlite_uri):
    folder = tmp_path / keys.OFFLINE_DIR
    path = _journal(sqlite_uri).dump(folder)
    (run_id,) = offline.upload(folder)
    client = store.open_store(sqlite_uri, must_exist=True)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "w0"
    assert run.data.params == {"loader.num_workers": "0"}
    assert run.data.tags["loaderbench.role"] == "job"
    history = store.metric_history(client, run_id, keys.SAMPLES_PER_S)
    assert history == {0: [100.0], 1: [120.0]}
    assert store.read_text(client, run_id, keys.CONFIG_ARTIFACT) == "seed: 0\n"
    assert not path.exists() and path.with_suffix(".uploaded").exists()


def test_upload_of_an_empty_folder_is_one_clear_error(tmp_path, capsys):
    assert offline.main([str(tmp_path)]) == 2
    assert "no offline run record" in capsys.readouterr().err


def test_a_server_that_is_not_there_is_one_line_naming_the_uri():
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(store.StoreUnreachable, match=f"mlflow.tracking_uri={uri}: no tracking"):
        store.check_reachable(uri)


def test_a_refused_connection_counts_as_unreachable_and_a_bad_request_does_not(
    sqlite_uri, monkeypatch
):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as refused:
        MlflowClient(f"http://127.0.0.1:{free_port()}").get_experiment_by_name("x")
    assert store.is_unreachable(refused.value)
    with pytest.raises(MlflowException) as bad:
        store.open_store(sqlite_uri).get_run("not-a-run")
    assert not store.is_unreachable(bad.value)


@pytest.mark.slow  # a real server: ~10 s to start
def test_the_tracker_keeps_the_run_when_the_server_stops_answering(
    tmp_path, monkeypatch, sqlite_template
):
    """In process, against a real server: cut off after the run began, still away at its end."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = MlflowServer(tmp_path / "server", template=sqlite_template).start()
    relay = Cut(server.port).mend()
    try:
        tracker = MlflowTracker(relay.url, "offline", offline_dir=tmp_path / keys.OFFLINE_DIR)
        tracker.start(run_name="w0", params={"loader.num_workers": 0}, tags={})
        tracker.log_metrics({keys.SAMPLES_PER_S: 100.0}, step=0)
        relay.cut()
        tracker.log_metrics({keys.SAMPLES_PER_S: 120.0}, step=1)
        tracker.end("FINISHED")
        assert tracker.unreachable and tracker.offline_record.exists()
        assert "python -m loaderbench.offline" in tracker.where()
        relay.mend()
        assert offline.upload(tracker.offline_dir) == [tracker.run_id]  # the same run
        client = store.open_store(relay.url)
        assert client.get_run(tracker.run_id).info.status == "FINISHED"
        history = store.metric_history(client, tracker.run_id, keys.SAMPLES_PER_S)
        assert history == {0: [100.0], 1: [120.0]}  # nothing twice, nothing lost
    finally:
        relay.cut()
        server.stop()


@pytest.mark.slow
def test_a_job_whose_server_goes_away_mid_run_finishes_and_uploads_later(tmp_path):
    server = MlflowServer(tmp_path / "server").start()
    env = job_env()
    env |= {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"}
    job_dir, epochs = tmp_path / "job", 12
    cmd = [
        sys.executable, str(ROOT / "run.py"),
        "dataset.size=512", "dataset.val_size=64", "dataset.image_size=32",
        f"trainer.epochs={epochs}", "trainer.progress=false",
        f"mlflow.tracking_uri={server.url}", f"hydra.run.dir={job_dir}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        client = store.open_store(server.url)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            runs = client.search_runs(["0", "1"], max_results=1)
            if runs and store.metric_history(client, runs[0].info.run_id, keys.SAMPLES_PER_S):
                break  # the first epoch is recorded: the run is under way
            time.sleep(0.2)
        server.stop()
        out = proc.communicate(timeout=600)[0]
    finally:
        server.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "stopped answering" in out and "python -m loaderbench.offline" in out
    assert "Traceback" not in out
    (record,) = (job_dir / keys.OFFLINE_DIR).glob("*.json")

    server.start()
    try:
        upload = subprocess.run(
            [sys.executable, "-m", "loaderbench.offline", str(job_dir / keys.OFFLINE_DIR)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert upload.returncode == 0, upload.stderr
        run = client.get_run(record.stem)
        assert run.info.status == "FINISHED"
        for key in (keys.SUMMARY_SAMPLES_PER_S, keys.SUMMARY_VAL_ACC, keys.PEAK_RSS):
            assert math.isfinite(run.data.metrics[key])
        history = store.metric_history(client, run.info.run_id, keys.SAMPLES_PER_S)
        assert sorted(history) == list(range(epochs))
        assert all(len(values) == 1 for values in history.values())
        assert store.read_text(client, run.info.run_id, keys.CONFIG_ARTIFACT)
    finally:
        server.stop()
