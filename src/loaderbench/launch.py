"""How a job was started, read once from Hydra's runtime config: its overrides, its folders,
whether it is a sweep's job, what the sweep varies and which option each config group got.

Everything else reads a :class:`Launch`, so a test builds one by hand (``run(cfg,
launch=Launch(...))``) and the job code never asks Hydra itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from loaderbench import keys


def swept_keys() -> list[str] | None:
    """The sweep's varied keys, as the sweep callback exported them (None outside a sweep)."""
    value = os.environ.get(keys.SWEPT_ENV)
    return value.split(",") if value else None


def group_choices(hydra_cfg: Any) -> dict[str, str]:
    """The option Hydra chose for each config group (``{"loader": "article_w8_spawn", ...}``,
    ``hydra.runtime.choices``), Hydra's own groups and empty slots left out."""
    choices = hydra_cfg.runtime.get("choices") or {}
    return {
        str(group): str(option)
        for group, option in choices.items()
        if option is not None and not str(group).startswith("hydra/")
    }


@dataclass
class Launch:
    """How this job was started (from Hydra's runtime config when there is one)."""

    overrides: list[str] = field(default_factory=list)
    output_dir: str | None = None
    sweep_dir: str | None = None
    multirun: bool = False
    launch_dir: str = field(default_factory=os.getcwd)
    swept: list[str] | None = None  # the sweep's varied keys (from the sweep callback)
    choices: dict[str, str] = field(default_factory=dict)  # config group -> option chosen

    @classmethod
    def from_hydra(cls, hydra_cfg: Any = None) -> Launch:
        """From ``hydra_cfg`` (a composed ``hydra`` node), else the running job's HydraConfig;
        an empty Launch outside Hydra."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if hydra_cfg is None:
            if not HydraConfig.initialized():
                return cls()
            hydra_cfg = HydraConfig.get()
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        return cls(
            overrides=list(hydra_cfg.overrides.task),
            output_dir=OmegaConf.select(hydra_cfg, "runtime.output_dir", default=None),
            sweep_dir=hydra_cfg.sweep.dir if multirun else None,
            multirun=multirun,
            launch_dir=hydra_cfg.runtime.cwd,
            swept=swept_keys() if multirun else None,
            choices=group_choices(hydra_cfg),
        )
