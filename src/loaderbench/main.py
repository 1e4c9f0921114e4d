"""The ``loaderbench`` command: Hydra's entry over the packaged configs. ``python -m loaderbench``
is the same command, and the checkout's ``run.py`` the same entry over the checkout's conf/.

    loaderbench                                  one measured run
    loaderbench -m loader.num_workers=0,2,4      a sweep
    loaderbench --config-dir ./conf dataset=my_data    your own options beside the packaged ones

Everything it writes (``outputs/``, the SQLite store, ``dataset.cache_dir``) is relative to the
directory it is launched from. That directory is also where a user's own package is looked for
(``dataset.target=mypkg.data.MyDataset``), as ``python -m`` and ``python run.py`` would: a console
script's own folder is on ``sys.path`` instead. It goes last, so it shadows nothing installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig


def job(cfg: DictConfig) -> float:
    """One Hydra job: the objective a sweeper optimises (summary samples/s)."""
    from loaderbench.cli import run_job  # deferred: keeps spawned workers' re-import cheap

    return run_job(cfg)


def main(config_dir: str | os.PathLike | None = None) -> None:
    """Run the command line in ``sys.argv``; ``config_dir`` defaults to the packaged configs."""
    import hydra

    from loaderbench import __version__
    from loaderbench.cli import main as guarded
    from loaderbench.config import ConfigError, register_configs
    from loaderbench.packaged_configs import config_dir as packaged
    from loaderbench.tracking_uri import check_command_line

    if sys.argv[1:] == ["--version"]:  # Hydra's own --version names only Hydra
        print(f"loaderbench {__version__} (Hydra {hydra.__version__})")
        return
    try:  # before Hydra writes the overrides into the job folder
        check_command_line(sys.argv[1:])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    register_configs()
    path = str(Path(config_dir or packaged()).resolve())
    entry = hydra.main(version_base="1.3", config_path=path, config_name="config")(job)
    guarded(entry)  # a stop signal ends the command with one line, never a traceback
