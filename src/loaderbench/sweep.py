"""The Hydra callback that turns a multirun into one answer.

``on_multirun_start`` runs in the launching process before any job starts (whatever the
launcher): it opens the sweep's parent run (:mod:`loaderbench.parent_run`, with the sweep's
constant settings as its params) and exports its id and the swept keys in the environment, where
every job, in this process or a submitit/Slurm one, reads them: it tags its own run as a child
and names it by the swept values. At the end, ``on_multirun_end`` (again in the launching
process) builds the report from the tracking store alone, so it comes out the same for every
launcher and store. A stop signal (see :mod:`loaderbench.cli`) ends the sweep through
:data:`loaderbench.active.ACTIVE`, where the open sweep registers itself, instead. While the
jobs run, a heartbeat shows the parent alive (:mod:`loaderbench.heartbeat`); first, this host's
runs left RUNNING by a process that died are ended KILLED (:mod:`loaderbench.lost`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from loaderbench import keys, store, tracking, ui
from loaderbench.active import ACTIVE, Interruption
from loaderbench.config import ConfigError
from loaderbench.heartbeat import process_tags
from loaderbench.parent_run import ParentRun

log = logging.getLogger(__name__)
JOB_ERROR_FILE = keys.ERROR_ARTIFACT  # also written into a failed job's output directory


def sweep_grid(config: DictConfig) -> tuple[list[str], int | None]:
    """The swept keys (in command-line order, then the preset's) and the number of jobs, from
    Hydra's own override grammar; the count is None where it is not a finite grid (a tune
    sweep's trials depend on what its probes find)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if is_tune(config):
        from loaderbench import tune

        return tune.tuned_keys(config), None

    overrides = OverridesParser.create().parse_overrides(sweep_definition(config).split(" "))
    swept, total = [], 1
    for o in (o for o in overrides if o.is_sweep_override()):
        swept.append(o.key_or_group)
        try:
            total *= len(list(o.sweep_string_iterator()))
        except Exception:  # an interval or a sampler's distribution: not a grid
            total = None if total is None else 0
    return swept, (total or None)


def is_tune(config: DictConfig) -> bool:
    """A ``sweep=tune`` sweep (its TuneSweeper, and the ``tune`` node it reads)."""
    return config.get("tune") is not None


def sweep_definition(config: DictConfig) -> str:
    """The sweep as a user would type it: command-line overrides plus a preset's grid."""
    parts = list(config.hydra.overrides.task)
    params = config.hydra.sweeper.get("params") or {}
    given = {p.lstrip("+~").split("=", 1)[0] for p in parts}
    parts += [f"{k}={v}" for k, v in params.items() if k not in given]
    return " ".join(p for p in parts if p)


def constants(config: DictConfig, swept: list[str]) -> dict[str, object]:
    """The sweep's settings that every job shares, as flat params (the swept keys left out)."""
    tree = OmegaConf.to_container(config, resolve=False)
    tree.pop("hydra", None)
    with contextlib.suppress(Exception):  # an interpolation only a job resolves: as written
        tree = OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    flat = tracking.flatten(tree)
    return {
        k: v for k, v in flat.items() if not any(k == s or k.startswith(s + ".") for s in swept)
    }


class _SacctWithoutAccounting(logging.Filter):
    """submitit polls ``sacct`` for its jobs' states and warns at every failed poll. On a
    cluster without accounting storage (no slurmdbd, as on scripts/local_cluster.sh) every poll
    fails, and submitit then follows its jobs by their result files, which is enough. Say so
    once instead of twice a poll. (sacct's own line, "Slurm accounting storage is disabled",
    comes from the subprocess and stays.)"""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if not self.said:
            self.said = True
            log.info(
                "sacct failed (on a cluster without accounting storage it always does): "
                "submitit follows the jobs by their result files instead; its further sacct "
                "warnings are hidden"
            )
        return False


SACCT_FILTER = _SacctWithoutAccounting()


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.parent: Any = None  # the ParentRun, in the tracking process
        self.parent_run_id: str | None = None
        self.total: int | None = None

    # -- start ---------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from loaderbench import tracking_host

        self.sweep_dir = Path(config.hydra.sweep.dir)
        if is_tune(config):  # the tune.* values and what the command line sweeps, checked
            from hydra_plugins.loaderbench_tune import check  # before anything is recorded

            try:
                check(config, list(config.hydra.overrides.task))
            except ConfigError as exc:
                log.error("error: %s", exc)
                sys.exit(2)
        if not config.mlflow.enabled:
            return
        try:
            uri = store.resolve_tracking_uri(config.mlflow.tracking_uri, config.hydra.runtime.cwd)
            store.check_reachable(uri)
        except ConfigError as exc:  # Hydra would turn it into a warning and launch the jobs
            log.error("error: %s", exc)
            sys.exit(2)
        self.tracking_uri = uri
        if "Slurm" in str(config.hydra.launcher.get("_target_", "")):
            logging.getLogger("submitit").addFilter(SACCT_FILTER)
        definition = sweep_definition(config)
        swept, self.total = sweep_grid(config)
        tags = {
            keys.ROLE_TAG: keys.ROLE_SWEEP,
            keys.SWEEP_DIR_TAG: str(self.sweep_dir.resolve()),
            keys.OVERRIDES_TAG: definition,
            keys.LAUNCHER_TAG: str(config.hydra.launcher.get("_target_", "")),
            **process_tags(),  # this process's: it runs the sweep
        }
        params = {k: "null" if v is None else str(v) for k, v in constants(config, swept).items()}
        cfg = OmegaConf.to_container(config, resolve=False)
        cfg.pop("hydra", None)
        texts = {
            keys.SWEEP_ARTIFACT: definition + "\n",
            keys.BASE_CONFIG_ARTIFACT: OmegaConf.to_yaml(cfg),
        }
        name = f"sweep {self._sweep_label()}"
        self.parent = tracking_host.make(
            ParentRun, uri, config.mlflow.experiment, name, tags, params, texts
        )
        self.parent_run_id = self.parent.get("run_id")
        # Jobs read the parent's id from the environment: it reaches in-process jobs, submitit's
        # local subprocesses and Slurm jobs (sbatch exports the submitting environment).
        os.environ[keys.PARENT_ENV] = self.parent_run_id
        os.environ[keys.SWEPT_ENV] = ",".join(swept)
        ACTIVE.register(self)
        atexit.register(self._close_parent_if_open)
        log.info("sweep %s: parent run %s in %s", self.sweep_dir, self.parent_run_id, uri)

    def _sweep_label(self) -> str:
        parts = self.sweep_dir.parts
        return "/".join(parts[-2:]) if len(parts) >= 2 else str(self.sweep_dir)

    def _close_parent_if_open(self) -> None:
        """At exit without on_multirun_end (a crash): never leave the parent RUNNING."""
        if self.parent_run_id is not None:
            self._finish("FAILED")

    def _finish(self, status: str, tags: dict[str, str] | None = None) -> None:
        self.parent_run_id = None
        ACTIVE.unregister(self)
        for var in (keys.PARENT_ENV, keys.SWEPT_ENV):
            os.environ.pop(var, None)
        self.parent.finish(status, tags)

    def interrupt(self, signal_name: str) -> Interruption:
        """The report of the jobs that finished, then the parent KILLED (see cli.main)."""
        parent = self.parent_run_id
        finished = 0
        try:
            result = self.parent.publish(self.sweep_dir)
            finished = sum(r.finished for r in result.rows)
        except Exception as exc:  # the report is a courtesy here: the KILLED mark must land
            log.warning("no report for the interrupted sweep: %s", exc)
        self._finish("KILLED", {keys.KILLED_BY_TAG: signal_name})
        return Interruption(f"sweep {parent}", finished, self.total or "?")

    def log_on_parent(self, metrics: dict[str, float]) -> None:
        """Metrics on the parent run (a sweeper's own figures), while it is open."""
        if self.parent_run_id is not None:
            self.parent.log_metrics(metrics)

    # -- end -----------------------------------------------------------------------------
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = sorted(str(p.parent.name) for p in self.sweep_dir.glob(f"*/{JOB_ERROR_FILE}"))
        if self.parent_run_id is not None:
            parent = self.parent_run_id
            self.parent.end_unfinished()
            result = self.parent.publish(self.sweep_dir)
            self._finish("FINISHED")
            log.info("\n%s", result.markdown)
            log.info("report: %s (and on parent run %s)", self.sweep_dir / keys.REPORT_MD, parent)
            log.info("look at it: %s", ui.ui_command(self.tracking_uri))
            for line in result.links:
                log.info("  %s", line[2:])
            failed = [
                r.name if r.status == "FAILED" else f"{r.name} ({r.status})"
                for r in result.rows
                if r.status in ("FAILED", "KILLED")
            ]
        if failed:
            log.error(
                "%d combination(s) did not finish: %s. A failed one has error.txt (in the run "
                "and in its job directory under %s); a KILLED one, the tag loaderbench.killed_by.",
                len(failed),
                ", ".join(failed),
                self.sweep_dir,
            )
            sys.exit(1)
