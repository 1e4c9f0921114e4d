"""Run names say what varies, briefly: the MLflow runs table shows them in a narrow column."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from loaderbench import keys
from loaderbench.config import register_configs
from loaderbench.launch import Launch
from loaderbench.naming import NAME_LIMIT, run_name
from tests.helpers import CONF, compose_config


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
        # four loader threads are t4, four worker processes w4; the backend goes unsaid
        (
            ["loader.backend=threads", "loader.num_workers=4"],
            [keys.BACKEND_PARAM, keys.WORKERS_PARAM],
            "t4",
        ),  # noqa: E501
        (["loader.num_workers=4"], [keys.BACKEND_PARAM, keys.WORKERS_PARAM], "w4"),
        (["loader.backend=threads", "loader.num_workers=2"], [keys.BACKEND_PARAM], "t2"),
        (["loader.backend=threads", "loader.num_workers=2"], None, "t2"),
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


def _launched(overrides: list[str], swept: str, monkeypatch) -> tuple[object, Launch]:
    """A sweep job's config and Launch, as Hydra composes them (``hydra.runtime.choices``
    included), with the swept keys the sweep callback exports."""
    monkeypatch.setenv(keys.SWEPT_ENV, swept)
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    return cfg, Launch.from_hydra(cfg.hydra)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [  # sweep=article's three loaders, then -m transforms=..., model=..., optim=..., dataset=...
        (["sweep=article", "loader=article_w0"], "article_w0"),
        (["sweep=article", "loader=article_w8"], "article_w8"),
        (["sweep=article", "loader=article_w8_spawn"], "article_w8_spawn"),
        (["hydra.mode=MULTIRUN", "transforms=augment"], "augment"),
        (["hydra.mode=MULTIRUN", "model=resnet18"], "resnet18"),
        (["hydra.mode=MULTIRUN", "optim=adamw"], "adamw"),
        (["hydra.mode=MULTIRUN", "dataset=tensor"], "tensor"),
    ],
)
def test_a_swept_config_group_is_named_by_the_option_hydra_chose(overrides, expected, monkeypatch):
    group = overrides[-1].split("=")[0]
    cfg, launch = _launched(overrides, group, monkeypatch)
    assert launch.multirun and launch.swept == [group]
    assert launch.choices[group] == expected
    assert run_name(cfg, launch.swept, launch.choices) == expected


def test_a_group_swept_with_a_knob_names_both(monkeypatch):
    overrides = ["hydra.mode=MULTIRUN", "loader.num_workers=2", "transforms=heavy"]
    cfg, launch = _launched(overrides, "loader.num_workers,transforms", monkeypatch)
    assert run_name(cfg, launch.swept, launch.choices) == "w2-heavy"
