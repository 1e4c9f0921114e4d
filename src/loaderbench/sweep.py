"""The Hydra callback that turns a multirun into one answer.

``on_multirun_start`` runs in the launching process before any job starts (whatever the
launcher): it opens the sweep's parent run and exports its id in the environment, where every
job, in this process or a submitit/Slurm one, reads it and tags its own run as a child. At the
end, ``on_multirun_end`` (again in the launching process) builds the report from the tracking
store alone, so it comes out the same for every launcher and store.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from loaderbench import keys, store

log = logging.getLogger(__name__)
JOB_ERROR_FILE = keys.ERROR_ARTIFACT  # also written into a failed job's output directory


def sweep_definition(config: DictConfig) -> str:
    """The sweep as a user would type it: command-line overrides plus a preset's grid."""
    parts = list(config.hydra.overrides.task)
    params = config.hydra.sweeper.get("params") or {}
    parts += [
        f"{k}={v}" for k, v in params.items() if not any(p.startswith(f"{k}=") for p in parts)
    ]
    return " ".join(parts)


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.client: Any = None
        self.parent_run_id: str | None = None
        self.interrupted = False
        self._previous_sigint: Any = None

    # -- start ---------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(config.hydra.sweep.dir)
        if not config.mlflow.enabled:
            return
        uri = store.resolve_tracking_uri(config.mlflow.tracking_uri, config.hydra.runtime.cwd)
        self.client, experiment_id = store.open_experiment(uri, config.mlflow.experiment)
        self.tracking_uri = uri
        definition = sweep_definition(config)
        run = self.client.create_run(
            experiment_id,
            run_name=f"sweep {self._sweep_label()}",
            tags={
                keys.ROLE_TAG: keys.ROLE_SWEEP,
                keys.SWEEP_DIR_TAG: str(self.sweep_dir.resolve()),
                keys.OVERRIDES_TAG: definition,
                keys.LAUNCHER_TAG: str(config.hydra.launcher.get("_target_", "")),
            },
        )
        self.parent_run_id = run.info.run_id
        cfg = OmegaConf.to_container(config, resolve=False)
        cfg.pop("hydra", None)
        self.client.log_text(self.parent_run_id, definition + "\n", keys.SWEEP_ARTIFACT)
        self.client.log_text(self.parent_run_id, OmegaConf.to_yaml(cfg), keys.BASE_CONFIG_ARTIFACT)
        # Jobs read the parent's id from the environment: it reaches in-process jobs, submitit's
        # local subprocesses and Slurm jobs (sbatch exports the submitting environment).
        os.environ[keys.PARENT_ENV] = self.parent_run_id
        self._previous_sigint = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_sigint)
        atexit.register(self._close_parent_if_open)
        log.info("sweep %s: parent run %s in %s", self.sweep_dir, self.parent_run_id, uri)

    def _sweep_label(self) -> str:
        parts = self.sweep_dir.parts
        return "/".join(parts[-2:]) if len(parts) >= 2 else str(self.sweep_dir)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        if callable(self._previous_sigint):
            self._previous_sigint(signum, frame)
        else:
            raise KeyboardInterrupt

    def _close_parent_if_open(self) -> None:
        """At exit without on_multirun_end (Ctrl-C, a crash): never leave the parent RUNNING."""
        if self.parent_run_id is None:
            return
        status = "KILLED" if self.interrupted else "FAILED"
        try:
            self.client.set_terminated(self.parent_run_id, status)
        finally:
            self.parent_run_id = None

    # -- end -----------------------------------------------------------------------------
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(keys.PARENT_ENV, None)
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
        failed = sorted(str(p.parent.name) for p in self.sweep_dir.glob(f"*/{JOB_ERROR_FILE}"))
        if self.parent_run_id is not None:
            from loaderbench.report import publish_report, write_report

            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

            parent = self.parent_run_id
            result = write_report(parent, self.client, self.sweep_dir)
            publish_report(parent, self.client, result)
            self.client.set_terminated(parent, "FINISHED")
            self.parent_run_id = None
            log.info("\n%s", result.markdown)
            log.info("report: %s (and on parent run %s)", self.sweep_dir / keys.REPORT_MD, parent)
            log.info("look at it: %s", store.ui_command(self.tracking_uri))
            failed = [r.name for r in result.rows if r.status in ("FAILED", "KILLED")]
        if failed:
            log.error(
                "%d combination(s) failed: %s. Each has error.txt (in the run and in its job "
                "directory under %s).",
                len(failed),
                ", ".join(failed),
                self.sweep_dir,
            )
            sys.exit(1)
