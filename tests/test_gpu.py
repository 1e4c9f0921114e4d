"""The default experiment on a CUDA device, where there is one (skipped elsewhere)."""

from __future__ import annotations

import math

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
