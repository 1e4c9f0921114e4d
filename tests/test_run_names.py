"""Run names say what varies, briefly: the MLflow runs table shows them in a narrow column."""

from __future__ import annotations

import pytest

from loaderbench.naming import NAME_LIMIT, run_name
from tests.helpers import compose_config


def test_a_sweep_child_is_named_by_its_swept_keys_only():
    cfg = compose_config(["loader.num_workers=2", "dataset=tensor", "dataset.size=256"])
    name = run_name(cfg, ["loader.num_workers"])
    assert name == "w2"
    assert "dataset" not in name and "size" not in name


@pytest.mark.parametrize(
    ("overrides", "swept", "expected"),
    [
        (
            ["loader.multiprocessing_context=spawn"],
            ["loader.num_workers", "loader.multiprocessing_context"],
            "w0-spawn",
        ),
        (["loader.pin_memory=true"], ["loader.pin_memory"], "pin"),
        (["loader.pin_memory=false"], ["loader.pin_memory"], "nopin"),
        (["dataset=tensor"], ["dataset", "loader.batch_size"], "tensor-bs64"),
        (["optim.lr=0.1"], ["optim.lr"], "lr=0.1"),
    ],
)
def test_swept_values_get_compact_labels(overrides, swept, expected):
    assert run_name(compose_config(overrides), swept) == expected


def test_a_single_run_names_its_workers_and_the_knobs_set_away_from_default():
    cfg = compose_config(["loader.num_workers=2", "loader.multiprocessing_context=spawn"])
    assert run_name(cfg) == "w2-spawn"
    assert run_name(compose_config([])) == "w0"


def test_a_name_is_never_longer_than_the_limit():
    cfg = compose_config(["optim.lr=0.123456789", "optim.weight_decay=0.000123456789"])
    name = run_name(cfg, ["optim.lr", "optim.weight_decay", "optim.momentum", "loader.num_workers"])
    assert len(name) == NAME_LIMIT
