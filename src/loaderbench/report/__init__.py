"""The sweep report: read a sweep's runs from the tracking store, say which loader setting won.

A sweep is a parent run (tag ``loaderbench.role=sweep``) and its children (tag
``mlflow.parentRunId``). :mod:`.runs` reads them into rows (:mod:`.rows`), :mod:`.analysis`
says what they mean, :mod:`.render` writes it down; this module publishes. :func:`write_report`
writes ``report.md``, ``report.csv``, ``throughput.png`` and ``stall.png``;
:func:`publish_report` attaches them to the parent with the ``sweep/*`` metrics and the
verdict / reproducibility tags. Importing the report imports neither torch nor mlflow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loaderbench import keys, store
from loaderbench.report import render
from loaderbench.report.analysis import Analysis, analyze
from loaderbench.report.rows import Group, RunRow
from loaderbench.report.runs import load_sweep
from loaderbench.store import SweepNotFound

__all__ = [
    "Analysis",
    "Group",
    "ReportResult",
    "RunRow",
    "SweepNotFound",
    "analyze_sweep",
    "load_sweep",
    "publish_report",
    "write_report",
]
log = logging.getLogger(__name__)


@dataclass
class ReportResult(Analysis):
    """The analysed sweep with its markdown; the paths are set by :func:`write_report`."""

    markdown: str = ""
    markdown_path: Path | None = None
    csv_path: Path | None = None
    plot_paths: list[Path] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # where to look in the MLflow UI


def analyze_sweep(client: Any, parent_run_id: str) -> ReportResult:
    """Everything the report says, with the markdown; no files."""
    result = ReportResult(**vars(analyze(*load_sweep(client, parent_run_id))))
    result.markdown = render.markdown(result)
    return result


def write_report(parent_run_id: str, client: Any, out_dir: str | Path) -> ReportResult:
    """Analyse the sweep and write report.md, report.csv, throughput.png and stall.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a = analyze_sweep(client, parent_run_id)
    a.markdown_path, a.csv_path = out / keys.REPORT_MD, out / keys.REPORT_CSV
    a.markdown_path.write_text(a.markdown + "\n", encoding="utf-8")
    render.write_csv(a.csv_path, a.rows, a.varied)
    a.plot_paths = render.plots(a, out)
    for w in a.warnings:
        log.warning("reproducibility: %s", w)
    return a


def publish_report(
    parent_run_id: str, client: Any, result: ReportResult, links: list[str] = ()
) -> None:
    """Attach the report files to the parent run, with the sweep/* metrics, the tags and the
    description the MLflow UI shows (``links``: lines to end it with)."""
    for path in (result.markdown_path, result.csv_path, *result.plot_paths):
        if path is not None and path.exists():
            client.log_artifact(parent_run_id, str(path))
    values = {keys.SWEEP_N_RUNS: result.n_runs, keys.SWEEP_N_FAILED: result.n_failed}
    if result.best_samples_per_s is not None:
        values[keys.SWEEP_BEST] = result.best_samples_per_s
    metrics = [(k, float(v), 0) for k, v in values.items()]
    # one value per setting that ran all three modes, in the report's order (step = its index)
    metrics += [(keys.SWEEP_EFFICIENCY, e, i) for i, e in enumerate(result.efficiencies)]
    tags = {
        keys.VERDICT_TAG: result.verdict,
        keys.WINNER_TAG: result.winner,
        keys.REPRO_TAG: result.reproducibility,
        keys.NOTE_TAG: render.note(result, links),
    }
    if result.recommendation:
        tags[keys.RECOMMENDATION_TAG] = result.recommendation
    if result.ceilings:
        tags[keys.CEILINGS_TAG] = "; ".join(result.ceilings)[:4000]
    store.log_batch(client, parent_run_id, metrics=metrics, tags=tags)
