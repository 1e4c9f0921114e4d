"""Faults between workers and the loop get their cause and fix; workers share the run's
settings whatever their start method."""

from __future__ import annotations

import pickle

import pytest
import torch

from loaderbench.config import ConfigError, LoaderConfig
from loaderbench.data import TransformedDataset, build_loader, plan_loader
from loaderbench.data.faults import LoaderFailure, explain_loader_error
from loaderbench.data.preflight import check_shared_memory, sample_bytes, shm_free_bytes
from loaderbench.devices import configure_determinism
from loaderbench.experiment import Launch, run
from tests.helpers import compose_config
from tests.user_datasets import WorkerFlags

CPU = torch.device("cpu")


def plan(**kw):
    return plan_loader(LoaderConfig(**kw), device=CPU)


def test_sample_bytes_counts_every_tensor():
    assert sample_bytes((torch.zeros(3, 4, 4), 1)) == 3 * 4 * 4 * 4 + 8
    assert sample_bytes({"x": torch.zeros(2, dtype=torch.uint8), "y": torch.zeros(1)}) == 6


@pytest.mark.skipif(shm_free_bytes() is None, reason="no /dev/shm here")
def test_batches_in_flight_beyond_free_shared_memory_are_warned_with_fixes():
    p = plan(num_workers=2, batch_size=64)
    too_big = shm_free_bytes()  # one batch the size of all free shm: 4 in flight can't fit
    warning = check_shared_memory(p, too_big)
    assert "/dev/shm" in warning and "--shm-size" in warning and "num_workers=0" in warning
    assert check_shared_memory(p, 1024) is None
    assert check_shared_memory(plan(num_workers=0), too_big) is None


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("unable to allocate shared memory(shm) for file: No space left on device", "--shm-size"),
        ("DataLoader worker (pid 7) is killed by signal: Bus error. ... shared memory", "/dev/shm"),
        ("DataLoader timed out after 1.0 seconds", "loader.timeout"),
        ("DataLoader worker (pid(s) 7) exited unexpectedly", "dmesg"),
        ("received 0 items of ancdata", "sharing_strategy=file_system"),
    ],
)
def test_torch_raw_loader_errors_get_cause_and_fix(raw, says):
    hint = explain_loader_error(RuntimeError(raw), plan(num_workers=2, timeout=1.0), 4 * 2**20)
    assert says in hint


def test_an_unrelated_error_is_left_alone():
    assert explain_loader_error(RuntimeError("shape mismatch"), plan(), 0) is None


def test_a_wrong_sharing_strategy_names_the_key():
    with pytest.raises(ConfigError, match="loader.sharing_strategy=shm"):
        plan(num_workers=2, sharing_strategy="shm")


def test_sharing_strategy_is_recorded_and_dropped_without_workers():
    p = plan(num_workers=2, sharing_strategy="file_system")
    assert p.effective["sharing_strategy"] == "file_system"
    p0 = plan(num_workers=0, sharing_strategy="file_system")
    assert p0.effective["sharing_strategy"] is None and "sharing_strategy" in p0.reasons


def test_spawned_workers_get_the_runs_determinism_and_sharing_strategy():
    """A spawned worker starts with torch's defaults; the worker_init_fn sets the run's. A forked
    worker checks that here at a fraction of a spawn's cost (~5 s: it imports torch again): the
    main process is put back to torch's defaults before the fork, so the worker sees only what
    worker_init_fn set. The slow sweeps run spawned workers for real."""
    p = plan(num_workers=1, multiprocessing_context="fork", sharing_strategy="file_system")
    loader = build_loader(TransformedDataset(WorkerFlags(), None, 0), p, seed=0, deterministic=True)
    shipped = pickle.loads(pickle.dumps(loader.worker_init_fn))  # what a spawned worker gets
    assert (shipped.deterministic, shipped.sharing_strategy) == (True, "file_system")
    torch.multiprocessing.set_sharing_strategy("file_descriptor")  # what a fresh process has
    configure_determinism(False, CPU)
    try:
        flags = torch.cat([batch[0] for batch in loader])
    finally:
        torch.multiprocessing.set_sharing_strategy("file_descriptor")
    assert flags.all(), flags


def _folder(root):
    from PIL import Image

    for split in ("train", "val"):
        for k, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (80 * k, 40 * i, 0)).save(root / split / cls / f"{i}.png")
    return root


def test_a_stall_past_the_timeout_says_what_to_raise(tmp_path):
    overrides = [
        "dataset=imagefolder",
        f"dataset.root={_folder(tmp_path / 'imgs')}",
        # Every read takes 0.4 s (the main process reads one sample to size the batches): the
        # worker stalls past the timeout on its first batch, of two reads.
        "dataset.read_latency_ms=400",
        "loader.num_workers=1",
        "loader.timeout=0.1",
        "loader.batch_size=2",
        "bench.mode=loader_only",
        "trainer.epochs=1",
        "trainer.progress=false",
        "mlflow.enabled=false",
    ]
    with pytest.raises(
        LoaderFailure,
        match=r"epoch 0, after 0 batches had arrived\) took longer than loader.timeout=0.1 s",
    ):
        run(compose_config(overrides))


def test_relative_paths_are_recorded_absolute_with_their_spelling(tmp_path):
    from loaderbench import tracking

    root = _folder(tmp_path / "imgs")
    overrides = [
        "dataset=imagefolder",
        "dataset.root=imgs",
        "trainer.epochs=1",
        "trainer.progress=false",
        "bench.mode=loader_only",
    ]
    cfg = compose_config(overrides)
    tracker = tracking.InMemoryTracker()
    run(cfg, tracker=tracker, launch=Launch(launch_dir=str(tmp_path)))
    assert tracker.params["dataset.root"] == str(root)
    assert tracker.params["given.dataset.root"] == "imgs"
    assert f"root: {root}" in tracker.texts["config.yaml"]


def test_a_missing_mandatory_path_is_still_the_clear_error():
    with pytest.raises(ConfigError, match="dataset.root must be set"):
        run(compose_config(["dataset=imagefolder", "mlflow.enabled=false"]))


def test_workers_killed_by_a_stop_signal_are_a_stop_not_a_fault():
    from loaderbench.stopping import Interrupted, stopped_with_workers

    died = RuntimeError("DataLoader worker (pid 7) is killed by signal: Terminated. ")
    exited = RuntimeError("DataLoader worker (pid(s) 7) exited unexpectedly")
    exited.__cause__ = died  # torch's chain when the death is noticed while waiting for data
    assert stopped_with_workers(exited).name == "SIGTERM"
    ctrl_c = RuntimeError("DataLoader worker (pid 7) is killed by signal: Interrupt. ")
    assert stopped_with_workers(ctrl_c).name == "SIGINT"
    during = RuntimeError("anything")
    during.__context__ = Interrupted(15)  # raised while this process handled its own SIGTERM
    assert stopped_with_workers(during) is during.__context__
    oom = RuntimeError("DataLoader worker (pid 7) is killed by signal: Killed. ")
    assert stopped_with_workers(oom) is None  # SIGKILL: the OOM killer's, a fault to explain
