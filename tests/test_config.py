"""Every option of every config group composes with the real config and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loaderbench.config import ConfigError
from loaderbench.data.loader import close_loader
from loaderbench.data.writer import write_imagefolder
from loaderbench.experiment import prepare
from tests.helpers import CONF, SMALL, compose_config

GROUPS = [
    "dataset",
    "transforms",
    "loader",
    "model",
    "optim",
    "trainer",
    "device",
    "bench",
    "mlflow",
]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
ACCELERATORS = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_imagefolder(root, count=12, val_count=6, image_size=16, num_classes=3, seed=0)
    return root


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(group, option, image_root):
    overrides = [*SMALL, "mlflow.enabled=false", f"{group}={option}"]
    if option == "imagefolder":  # a folder of files: its size is what is on disk
        overrides = [o for o in overrides if not o.startswith("dataset.")]
        overrides.append(f"dataset.root={image_root}")
    if option.startswith("article_w8"):  # 8 spawned workers take 20 s to import torch: 1 will do
        overrides.append("loader.num_workers=1")
    if option == "shards":  # generated shards go to a cache folder: a temporary one here
        overrides.append(f"dataset.cache_dir={image_root / 'cache'}")
    if (group, option) == ("dataset", "custom"):  # a user's Dataset class, by its path
        overrides += ["dataset.target=tests.user_datasets.Tensors", "+dataset.kwargs.n=400"]
    if (group, option) == ("model", "custom"):  # a user's nn.Module, by its path
        overrides.append("model._target_=tests.user_datasets.Net")
    cfg = compose_config(overrides)
    if group == "device" and option in ACCELERATORS and not ACCELERATORS[option]:
        with pytest.raises(ConfigError, match=f"device={option}"):
            prepare(cfg)
        return
    setup = prepare(cfg)
    try:
        images, labels, ids = next(iter(setup.train_loader))
        assert ids.dtype == torch.int64 and len(ids) == len(labels)
        assert images.dtype == torch.float32 and images.ndim == 4
        logits = setup.model(images.to(setup.device))
        assert logits.shape == (len(labels), setup.data.num_classes)
    finally:
        close_loader(setup.train_loader)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "sweep").glob("*.yaml")))
def test_every_sweep_preset_composes(preset):
    cfg = compose_config([f"sweep={preset}"])
    assert cfg.loader.batch_size > 0


def test_missing_mandatory_value_names_the_key():
    cfg = compose_config(["mlflow.enabled=false", "dataset=imagefolder"])
    with pytest.raises(ConfigError, match=r"dataset\.root must be set"):
        prepare(cfg)


def test_wrong_type_fails_at_compose_time():
    with pytest.raises(Exception, match="num_workers"):
        compose_config(["loader.num_workers=many"])
