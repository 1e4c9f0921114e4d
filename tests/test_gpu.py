"""The default experiment on a CUDA device, where there is one (skipped elsewhere)."""

from __future__ import annotations

import math
import time

import pytest
import torch

from loaderbench import keys, tracking
from loaderbench.experiment import run
from tests.helpers import SMALL, compose_config

pytestmark = pytest.mark.gpu


def test_the_default_experiment_trains_on_cuda():
    tracker = tracking.InMemoryTracker()
    cfg = compose_config(
        [*SMALL, "device=cuda", "loader.pin_memory=true", "loader.num_workers=2",
         "mlflow.enabled=false"]
    )  # fmt: skip
    run(cfg, tracker=tracker)
    assert tracker.status == "FINISHED"
    assert tracker.params["effective.device"].startswith("cuda")
    assert tracker.params["effective.pin_memory"] is True  # honoured on an accelerator
    assert tracker.tags["env.device_name"] == torch.cuda.get_device_name(0)
    for key in (keys.SUMMARY_SAMPLES_PER_S, keys.SUMMARY_VAL_ACC, keys.PEAK_PSS):
        assert math.isfinite(tracker.last(key)), key


def test_cuda_histories_are_identical_across_loader_settings():
    def history(*overrides: str) -> list[float]:
        tracker = tracking.InMemoryTracker()
        run(compose_config([*SMALL, "device=cuda", "mlflow.enabled=false", *overrides]),
            tracker=tracker)  # fmt: skip
        return [v for _, v in tracker.metrics[keys.LOSS_TRAIN]]

    assert history("loader.num_workers=0") == history(
        "loader.num_workers=2", "loader.pin_memory=true"
    )


def test_the_emulated_step_is_a_device_wait_on_the_current_stream():
    from loaderbench.emulated import CudaStep, StepTime

    step = CudaStep(StepTime(20.0, None, 8, "test"), "none", torch.device("cuda"))
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    step(8)
    step(8)
    queued = time.perf_counter() - t0  # two launches: the host goes on while the device works
    step(8)  # a third waits for the oldest: at most two steps in flight
    blocked = time.perf_counter() - t0
    step.drain()
    total = time.perf_counter() - t0
    assert queued < 0.015 <= blocked and total >= 0.055  # 3 x 20 ms of device time
    (start, end), *_ = step._events
    assert start.elapsed_time(end) == pytest.approx(20.0, rel=0.1)  # the calibrated cycles
    waits = step.take_waits()
    assert len(waits) == 2 and max(waits) < 0.002  # queued back to back: no idle between


def test_an_emulated_run_on_cuda_steps_on_the_device():
    tracker = tracking.InMemoryTracker()
    cfg = compose_config(
        [*SMALL, "device=cuda", "loader.pin_memory=true", "loader.num_workers=2",
         "bench.mode=emulated", "bench.step_ms=5", "mlflow.enabled=false"]
    )  # fmt: skip
    run(cfg, tracker=tracker)
    assert tracker.status == "FINISHED"
    assert "torch.cuda._sleep" in tracker.tags["effective.step_ms.reason"]
    assert tracker.tags[keys.FED_TAG] in (keys.FED, keys.STARVED)
    assert tracker.last(keys.EPOCH_S) >= 8 * 5e-3  # 8 batches of 32, each a 5 ms device step
