"""loaderbench from Python (a notebook, another tool): a job or a sweep from override strings,
and what it recorded, read back from the store::

    from loaderbench import api
    result = api.sweep(["loader.num_workers=0,2,4", "trainer.epochs=1"])
    result.verdict, result.winner, result.parent_id, result.run_ids

Both run the ``loaderbench`` command itself, as ``python -m loaderbench [-m] ...`` in a
subprocess. Hydra's compose API builds a config but runs no sweeper, launcher or callback, and a
sweep's parent run and its report live in the callback: a sweep started any other way would be a
second implementation of it. A subprocess also keeps the caller free of what a run leaves
behind (stop-signal handlers, torch's thread settings, worker processes).

The output folder is this call's own (``outputs/runs|sweeps/<date>/<time>`` under ``cwd``, or the
``hydra.run.dir`` / ``hydra.sweep.dir`` given); the runs are the ones tagged with it, in the
store that the launched config names.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from loaderbench import keys, store

log = logging.getLogger(__name__)
DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir")
TAIL_LINES = 40  # of the command's output, kept for the error when it fails


class CommandFailed(RuntimeError):
    """The command exited non-zero (a config error, a failed run, a sweep with a failed job);
    ``result`` holds what it recorded all the same."""

    def __init__(self, result: Result):
        super().__init__(
            f"loaderbench exited with status {result.returncode}; its last lines:\n{result.tail}"
        )
        self.result = result


@dataclass
class Result:
    """What one call recorded. ``run_ids``: the jobs' runs, in start order (a sweep's
    children); ``parent_id``, ``verdict`` and ``winner``: the sweep's parent run and its
    ``loaderbench.verdict`` / ``loaderbench.winner`` tags (None for a single job)."""

    returncode: int
    output_dir: Path
    tracking_uri: str | None  # None: mlflow.enabled=false, or the command failed before it ran
    run_ids: list[str] = field(default_factory=list)
    parent_id: str | None = None
    verdict: str | None = None
    winner: str | None = None
    tail: str = field(default="", repr=False)  # the command's last lines of output


def run(
    overrides: Sequence[str] = (),
    *,
    multirun: bool = False,
    config_dir: str | os.PathLike | None = None,
    cwd: str | os.PathLike | None = None,
    check: bool = True,
    echo: bool = True,
) -> Result:
    """Run ``loaderbench [-m] *overrides`` in ``cwd`` (default: here) and read back its runs.

    ``config_dir``: the user's own config folder (``--config-dir``). ``echo``: pass the
    command's output through to ``sys.stdout`` as it comes (a notebook shows it in the cell).
    ``check``: raise :class:`CommandFailed` when it exits non-zero."""
    cwd = Path(cwd or os.getcwd()).resolve()
    out, dirs = output_dir(list(overrides), multirun, cwd)
    cmd = [sys.executable, "-m", "loaderbench", *(["-m"] if multirun else [])]
    if config_dir is not None:
        cmd += ["--config-dir", str(Path(cwd, config_dir).resolve())]
    cmd += [*overrides, *dirs]
    returncode, tail = _run(cmd, cwd, echo)
    result = read_back(out, cwd, returncode, tail)
    if check and returncode != 0:
        raise CommandFailed(result)
    return result


def sweep(overrides: Sequence[str] = (), **kwargs) -> Result:
    """``loaderbench -m *overrides``: :func:`run` with ``multirun=True``."""
    return run(overrides, multirun=True, **kwargs)


def output_dir(overrides: list[str], multirun: bool, cwd: Path) -> tuple[Path, list[str]]:
    """The folder this call's runs are tagged with, and the overrides that set it. Both of
    Hydra's folders are set (a preset such as ``sweep=workers`` makes a job call a sweep)."""
    given = {}
    for o in overrides:
        key, eq, value = o.lstrip("+").partition("=")
        if eq and key in DIR_KEYS:
            given[key] = value.strip("'\"")
    mine = DIR_KEYS[1] if multirun else DIR_KEYS[0]
    if mine in given:  # as Hydra spells it in the job's output_dir tag: absolute, links kept
        return Path(os.path.abspath(Path(cwd, given[mine]))), []
    kind = "sweeps" if multirun else "runs"
    base = cwd / "outputs" / kind / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    out, n = base, 0
    while True:  # claimed by creating it: two calls in the same second get two folders
        try:
            out.mkdir(parents=True)
            break
        except FileExistsError:
            n += 1
            out = base.with_name(f"{base.name}-{n}")
    return out, [f"{key}={_quoted(str(out))}" for key in DIR_KEYS if key not in given]


def _quoted(value: str) -> str:
    """``value`` as a Hydra override value: quoted when it holds characters Hydra parses."""
    if re.fullmatch(r"[\w/.\-:@]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _run(cmd: list[str], cwd: Path, echo: bool) -> tuple[int, str]:
    """Run ``cmd``, its output passed through as it comes; the exit status and last lines.
    Its own session: a Ctrl-C (or a notebook's interrupt) reaches it once, from here, and it
    stops as the command line does (runs marked KILLED, the sweep's report written)."""
    log.info("running %s", " ".join(cmd))
    lines: list[str] = []
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    ) as proc:
        try:
            for line in proc.stdout:
                lines = [*lines[-TAIL_LINES + 1 :], line]
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            return proc.wait(), "".join(lines)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            proc.wait()
            raise


def _launched_config(out: Path):
    """The config the command composed (saved by Hydra in its output folder), or None."""
    from omegaconf import OmegaConf

    # multirun.yaml: Hydra's own sweeper writes it; sweep=tune's jobs have only their own
    saved = [out / "multirun.yaml", out / ".hydra" / "config.yaml"]
    saved += sorted(out.glob("*/.hydra/config.yaml"))
    for path in saved:
        if path.is_file():
            return OmegaConf.load(path)
    return None


def runs_tagged(client, tags: dict[str, str]) -> list:
    """Every run, in any experiment, that carries all of ``tags``, in start order, all pages."""
    from mlflow.entities import ViewType

    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    order, runs, token = ["attributes.start_time ASC"], [], None
    while ids:
        page = client.search_runs(ids, query, ViewType.ALL, store.PAGE, order, page_token=token)
        runs += list(page)
        if not (token := page.token):
            break
    return runs


def read_back(out: Path, cwd: Path, returncode: int = 0, tail: str = "") -> Result:
    """The runs tagged with output folder ``out``, in the store its launched config names."""
    from omegaconf import OmegaConf

    result = Result(returncode, out, None, tail=tail)
    cfg = _launched_config(out)
    if cfg is None or not OmegaConf.select(cfg, "mlflow.enabled", default=True):
        return result
    configured = OmegaConf.select(
        cfg, "mlflow.tracking_uri", default=None, throw_on_resolution_failure=False
    )
    result.tracking_uri = store.resolve_tracking_uri(configured, cwd)
    try:
        client = store.open_store(result.tracking_uri, must_exist=True)
    except store.NotInStore:
        return result  # nothing was recorded (the command failed before a run opened)
    # the sweep callback tags the resolved folder; a job, Hydra's absolute output_dir
    parents = runs_tagged(
        client, {keys.ROLE_TAG: keys.ROLE_SWEEP, keys.SWEEP_DIR_TAG: str(out.resolve())}
    )
    if parents:
        parent = parents[-1]
        result.parent_id = parent.info.run_id
        result.verdict = parent.data.tags.get(keys.VERDICT_TAG)
        result.winner = parent.data.tags.get(keys.WINNER_TAG)
        result.run_ids = [r.info.run_id for r in store.child_runs(client, parent)]
    else:
        jobs = runs_tagged(client, {keys.OUTPUT_DIR_TAG: str(out)})
        result.run_ids = [r.info.run_id for r in jobs]
    return result
