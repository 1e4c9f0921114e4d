"""loaderbench: which DataLoader settings make training fastest here? See README.md."""

import hydra
from omegaconf import DictConfig

from loaderbench.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from loaderbench.cli import run_job  # deferred: keeps spawned workers' re-import cheap

    return run_job(cfg)


if __name__ == "__main__":
    from loaderbench.cli import main as guarded

    guarded(main)  # a stop signal ends the command with one line, never a traceback
