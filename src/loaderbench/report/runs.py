"""A sweep's children as :class:`~loaderbench.report.analysis.RunRow` rows, read through
:mod:`loaderbench.store`: params, metrics, the error line of a failed run, and the per-epoch
histories the reproducibility check compares."""

from __future__ import annotations

import logging
from typing import Any

from loaderbench import keys, store
from loaderbench.report.rows import HISTORIES, RunRow

log = logging.getLogger(__name__)


def error_line(text: str) -> str | None:
    """The line that says what went wrong: a traceback's exception line, else the first line."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("Traceback"):
        lines = [ln for ln in lines if not ln[0].isspace()][-1:]
    return lines[0] if lines else None


def _stored_error(client: Any, run_id: str) -> str | None:
    """The error line of the run's ``error.txt``, if it has one."""
    try:
        text = store.read_text(client, run_id, keys.ERROR_ARTIFACT)
    except Exception as exc:  # an unreachable artifact store: keep the row, without the line
        log.debug("error.txt of run %s unreadable: %s", run_id, exc)
        return None
    return None if text is None else error_line(text)


def to_row(client: Any, run: Any) -> RunRow:
    info, data = run.info, run.data
    row = RunRow(info.run_id, info.run_name or info.run_id[:8], info.status, data.params, {})
    row.metrics = dict(data.metrics)
    row.exactly_once = data.tags.get(keys.EXACTLY_ONCE_TAG)
    row.tags = {k: v for k, v in data.tags.items() if k.startswith(keys.ENV_PREFIX)}
    if (signal := data.tags.get(keys.KILLED_BY_TAG)) == keys.KILLED_BY_LOST:
        why = data.tags.get(keys.LOST_REASON_TAG, "its process is gone")
        row.error = f"lost: {why} (SIGKILL, out of memory, or its node died)"
    elif signal:
        row.error = f"stopped by {signal} (Ctrl-C, kill, scancel or preemption)"
    elif not row.finished:
        row.error = _stored_error(client, row.run_id)
    elif row.mode == keys.MODE_TRAIN:
        hists = {
            k: store.last_per_step(store.metric_history(client, row.run_id, k)) for k in HISTORIES
        }
        row.histories = {key: h for key, h in hists.items() if h}
    return row


def load_sweep(client: Any, parent_run_id: str) -> tuple[str, list[RunRow], dict[str, float]]:
    """(sweep name, children in start order, the search's own figures if a tuner logged them
    on the parent) of a sweep's parent run."""
    parent = store.sweep_parent(client, parent_run_id)
    rows = [to_row(client, run) for run in store.child_runs(client, parent)]
    search = {k: v for k, v in parent.data.metrics.items() if k.startswith("tune/")}
    return parent.info.run_name or parent_run_id, rows, search
