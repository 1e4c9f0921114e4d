"""Several ranks per job, for real: 2 gloo ranks on this machine through torch's elastic
launcher. A sweep over ranks and workers, a stop signal, a rank killed mid-epoch, a dataset that
fails in one rank, the monitor's view of the process tree, and tar shards split by rank. Small:
two ranks on two cores are slow but real."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from loaderbench import keys
from tests.helpers import ROOT, job_env, run_in_memory, still_running

pytestmark = pytest.mark.slow
TINY = [  # 129 samples: 2 ranks share 130, one padded
    "dataset.size=129",
    "dataset.val_size=32",
    "dataset.image_size=16",
    "trainer.epochs=1",
    "loader.batch_size=16",
    "trainer.progress=false",
]
LONG = ["dataset.size=20000", "dataset.image_size=32", "trainer.epochs=1", "trainer.progress=false"]


def cli(args: list[str], tmp: Path, **kwargs) -> subprocess.Popen:
    env = job_env()
    cmd = [
        sys.executable, "run.py", *args, f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"hydra.sweep.dir={tmp}/sweep", f"hydra.run.dir={tmp}/run",
    ]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)  # fmt: skip


def jobs(tmp: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    exp = client.get_experiment_by_name("loaderbench")
    runs = client.search_runs([exp.experiment_id], run_view_type=3)
    return client, [r for r in runs if r.data.tags.get(keys.ROLE_TAG) == keys.ROLE_JOB]


def test_a_sweep_over_ranks_and_workers_delivers_once_and_trains_alike_at_each_n(tmp_path):
    proc = cli(["-m", "trainer.ranks=1,2", "loader.num_workers=0,1", *TINY], tmp_path)
    out = proc.communicate(timeout=900)[0]
    print(out[-4000:])
    assert proc.returncode == 0
    client, runs = jobs(tmp_path)
    assert sorted(r.info.run_name for r in runs) == ["ddp1-w0", "ddp1-w1", "ddp2-w0", "ddp2-w1"]
    histories: dict[str, list] = {}
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK
        ranks = run.data.params[keys.RANKS_PARAM]
        assert run.data.params["effective.ranks"] == ranks
        loss = [m.value for m in client.get_metric_history(run.info.run_id, keys.LOSS_TRAIN)]
        histories.setdefault(ranks, []).append(loss)
        metrics = run.data.metrics
        if ranks == "2":
            assert run.data.params["effective.dist_backend"] == "gloo"
            assert metrics[keys.PADDED_SAMPLES] == 1 and metrics[keys.SAMPLES_SEEN] == 130
            assert {"rank/0/data_wait_fraction", "rank/1/data_wait_fraction"} <= metrics.keys()
            assert metrics[keys.SUMMARY_SLOWEST_RANK] in (0, 1)
        else:
            assert keys.PADDED_SAMPLES not in metrics and metrics[keys.SAMPLES_SEEN] == 129
    for ranks, same in histories.items():  # bit-identical at each N, whatever the workers
        assert same[0] == same[1], ranks
    assert histories["1"][0] != histories["2"][0]  # another global batch: another training
    (parent,) = [
        r for r in client.search_runs([runs[0].info.experiment_id])
        if r.data.tags.get(keys.ROLE_TAG) == keys.ROLE_SWEEP
    ]  # fmt: skip
    assert parent.data.tags[keys.REPRO_TAG] == "identical"  # compared within each N


def _ranks_of(pid: int, deadline: float) -> tuple[list[psutil.Process], set[int]]:
    """The job's two ranks (its spawned children, in start order: rank 0 first) once both have
    a loader worker busy, and every pid of its tree seen meanwhile."""
    tree: set[int] = set()
    while time.time() < deadline:
        kids = psutil.Process(pid).children(recursive=True)
        tree |= {k.pid for k in kids}
        ranks = []
        for k in kids:
            with contextlib.suppress(psutil.Error):
                if k.ppid() == pid and "spawn_main" in " ".join(k.cmdline()):
                    ranks.append(k)
        workers = [k for k in kids if any(k.ppid() == r.pid for r in ranks)]
        if len(ranks) == 2 and len(workers) >= 2:
            time.sleep(3)  # mid-epoch
            tree |= {k.pid for k in psutil.Process(pid).children(recursive=True)}
            return sorted(ranks, key=lambda p: p.create_time()), tree
        time.sleep(0.5)
    pytest.fail("the ranks and their workers never appeared")


def _gone(tree: set[int]) -> None:
    deadline = time.time() + 30
    while still_running(tree) and time.time() < deadline:
        time.sleep(0.5)
    assert not still_running(tree), "a rank or a worker outlived the job"


def test_sigterm_to_a_two_rank_job_kills_the_run_and_every_rank_and_worker(tmp_path):
    proc = cli(["trainer.ranks=2", "loader.num_workers=1", *LONG], tmp_path)
    ranks, tree = _ranks_of(proc.pid, time.time() + 300)
    os.kill(proc.pid, signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    print(out[-4000:])
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in out
    assert out.strip().splitlines()[-1].startswith("interrupted by SIGTERM: run ")
    _gone(tree)
    _, (run,) = jobs(tmp_path)
    assert run.info.status == "KILLED" and run.data.tags[keys.KILLED_BY_TAG] == "SIGTERM"


def test_a_rank_killed_mid_epoch_fails_the_job_naming_it_and_leaves_nothing(tmp_path):
    proc = cli(["trainer.ranks=2", "loader.num_workers=1", *LONG], tmp_path)
    ranks, tree = _ranks_of(proc.pid, time.time() + 300)
    ranks[1].kill()
    out = proc.communicate(timeout=120)[0]
    print(out[-4000:])
    assert proc.returncode == 1
    _gone(tree)
    client, (run,) = jobs(tmp_path)
    assert run.info.status == "FAILED"
    error = (tmp_path / "run" / keys.ERROR_ARTIFACT).read_text().strip().splitlines()[-1]
    assert (
        error
        == f"loaderbench.ranks.agent.RankFailed: rank 1 (pid {ranks[1].pid}) was killed by SIGKILL"
    )


def test_a_dataset_that_fails_in_one_rank_is_that_ranks_one_line(tmp_path):
    proc = cli(["trainer.ranks=2", "dataset=custom", "dataset.target=tests.user_datasets.FailsInRank",
                "trainer.epochs=1", "trainer.progress=false"], tmp_path)  # fmt: skip
    out = proc.communicate(timeout=300)[0]
    lines = [line for line in out.splitlines() if line.strip()]
    print(out[-4000:])
    assert proc.returncode == 2
    assert lines[-1].startswith("error: rank 1: dataset.target=tests.user_datasets.FailsInRank")
    assert "/data/shard-1.bin: no such file on this node" in lines[-1]
    assert not [line for line in lines if "rank 0" in line or "Traceback" in line]
    _, (run,) = jobs(tmp_path)
    assert run.info.status == "FAILED"


def test_the_monitor_sees_every_rank_and_worker_and_shards_split_by_rank(small_cfg, tmp_path):
    """In this process: the resource monitor's view of the tree while the ranks run, and a
    shard stream read by spawned workers (no process group of their own) once across ranks."""
    from loaderbench.resources import _descendants

    seen: dict[int, int] = {}  # pid -> parent pid
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            for pid in _descendants(os.getpid()):
                with contextlib.suppress(psutil.Error):
                    seen.setdefault(pid, psutil.Process(pid).ppid())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        tracker = run_in_memory(small_cfg(
            "trainer.ranks=2", "dataset=shards", f"dataset.cache_dir={tmp_path}",
            "dataset.size=96", "dataset.per_shard=20", "dataset.streams=4",
            "dataset.image_size=16", "loader.batch_size=16", "loader.num_workers=1",
            "loader.multiprocessing_context=spawn", "bench.mode=loader_only",
        ))  # fmt: skip
    finally:
        done.set()
        watcher.join()
    ranks = [pid for pid, parent in seen.items() if parent == os.getpid()]
    workers = [pid for pid, parent in seen.items() if parent in ranks]
    assert len({seen[w] for w in workers}) == 2, seen  # both ranks, each with its worker
    assert tracker.last(keys.SAMPLES_SEEN) == 96 and tracker.last(keys.DUPLICATE_SAMPLES) == 0
    assert tracker.last(keys.PADDED_SAMPLES) == 0
    assert tracker.tags[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK
