"""Every option of every config group composes with the real config and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from loaderbench.config import ConfigError
from loaderbench.data.imagefolder.write import write_imagefolder
from loaderbench.data.loader import close_loader
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


def _overrides(group: str, option: str, image_root: Path) -> list[str]:
    """Small settings for ``group=option``, with what the option needs to build here."""
    overrides = [*SMALL, "mlflow.enabled=false", f"{group}={option}"]
    if option == "imagefolder":  # a folder of files: its size is what is on disk
        overrides = [o for o in overrides if not o.startswith("dataset.")]
        overrides.append(f"dataset.root={image_root}")
    if option.startswith("article_w8"):  # 8 workers on 2 cores: 1 will do
        overrides.append("loader.num_workers=1")
    if option == "shards":  # generated shards go to a cache folder: a temporary one here
        overrides.append(f"dataset.cache_dir={image_root / 'cache'}")
    if (group, option) == ("dataset", "custom"):  # a user's Dataset class, by its path
        overrides += ["dataset.target=tests.user_datasets.Tensors", "+dataset.kwargs.n=400"]
    if (group, option) == ("model", "custom"):  # a user's nn.Module, by its path
        overrides.append("model._target_=tests.user_datasets.Net")
    return overrides


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(group, option, image_root):
    cfg = compose_config(_overrides(group, option, image_root))
    if group == "device" and option in ACCELERATORS and not ACCELERATORS[option]:
        with pytest.raises(ConfigError, match=f"device={option}"):
            prepare(cfg)
        return
    setup = prepare(cfg)
    try:
        if cfg.loader.multiprocessing_context == "spawn":
            # Built, not started: a spawned worker imports torch again (~5 s here). The slow
            # sweeps train under spawn (test_sweep_over_workers_and_start_methods_is_identical...).
            assert setup.train_loader.multiprocessing_context.get_start_method() == "spawn"
            return
        images, labels, ids = next(iter(setup.train_loader))
        assert ids.dtype == torch.int64 and len(ids) == len(labels)
        assert images.dtype == torch.float32 and images.ndim == 4
        logits = setup.model(images.to(setup.device))
        assert logits.shape == (len(labels), setup.data.num_classes)
    finally:
        close_loader(setup.train_loader)


# Every dataset _target_ that conf/ has ever named (git log -p conf/): a user's own config may
# still name one, so each keeps building its option wherever the code has moved since.
OLD_DATASET_TARGETS = {
    "custom": "loaderbench.data.custom.make_custom",
    "fake": "loaderbench.data.tensor.make_fake",
    "imagefolder": "loaderbench.data.imagefolder.make_imagefolder",
    "shapes": "loaderbench.data.shapes.make_shapes",
    "shards": "loaderbench.data.shards.make_shards",
    "tensor": "loaderbench.data.tensor.make_tensor",
}


@pytest.mark.parametrize(("option", "target"), sorted(OLD_DATASET_TARGETS.items()))
def test_every_old_dataset_target_still_instantiates(option, target, image_root):
    cfg = compose_config([*_overrides("dataset", option, image_root), f"dataset._target_={target}"])
    today = compose_config([f"dataset={option}"]).dataset._target_
    assert get_object(target) is get_object(today), f"{target} is not {today}"
    options = OmegaConf.to_container(cfg.dataset, resolve=True)
    options.pop("name")  # the option's label, not an argument
    pair = instantiate(options)
    assert len(pair.train) and len(pair.val) and pair.num_classes >= 2


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
