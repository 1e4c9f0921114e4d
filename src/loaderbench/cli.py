"""What ``run.py`` calls: one job, with bad input turned into a one-line error."""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from loaderbench.config import ConfigError
from loaderbench.data.faults import LoaderFailure

log = logging.getLogger("loaderbench")


def run_job(cfg: DictConfig) -> float:
    from loaderbench.experiment import run

    try:
        return run(cfg)
    except ConfigError as exc:  # single run: the message names the key and the fix
        log.error("error: %s", exc)
        sys.exit(2)
    except LoaderFailure as exc:  # recorded FAILED with its traceback; here, cause and fix
        log.error("error: %s", exc)
        sys.exit(1)
