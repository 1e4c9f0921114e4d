"""An :class:`~loaderbench.report.analysis.Analysis` as markdown and CSV (the PNG plots are
:mod:`.plots`').

Stored values are never rounded: only the markdown formats them; the CSV keeps full precision.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from loaderbench import feeding, keys
from loaderbench.report import feed
from loaderbench.report.analysis import Analysis
from loaderbench.report.plots import plot, plots, trials_plot
from loaderbench.report.predict import Prediction
from loaderbench.report.rows import Group, RunRow

__all__ = ["markdown", "note", "plot", "plots", "trials_plot", "write_csv"]  # plots: as before
WORKERS, REPEAT = keys.WORKERS_PARAM, keys.REPEAT_PARAM
COLUMNS = {  # summary key -> (table header, display format); the table shows them in this order
    keys.SUMMARY_SAMPLES_PER_S: ("samples/s", ".0f"),
    keys.SUMMARY_PROJECTED: ("projected samples/s (probe)", ".0f"),
    keys.SUMMARY_STEADY: ("steady samples/s", ".0f"),
    keys.SUMMARY_FIRST_BATCH: ("first batch (s)", ".3g"),
    keys.SUMMARY_DATA_WAIT: ("data wait", ".1%"),
    keys.SUMMARY_STEP_WAIT: ("wait per step (ms)", ".3g"),
    keys.PEAK_RSS: ("peak RSS (MB)", ".0f"),
    keys.PEAK_PSS: ("peak PSS (MB)", ".0f"),
    keys.PEAK_ANON: ("peak anon (MB)", ".0f"),
    keys.WORKERS_PSS: ("workers PSS (MB)", ".0f"),
    keys.WORKERS_USS: ("workers USS (MB)", ".0f"),
    keys.CPU_UTILIZATION: ("CPU (cores busy)", ".3g"),
    keys.SUMMARY_VAL_ACC: ("val acc", ".1%"),
}
# only when a run has them
OPTIONAL = (
    keys.SUMMARY_PROJECTED,
    keys.SUMMARY_STEP_WAIT,
    keys.PEAK_PSS,
    keys.PEAK_ANON,
    keys.WORKERS_PSS,
    keys.WORKERS_USS,
    keys.CPU_UTILIZATION,
)


def _table(header: list[str], body: list[list[Any]]) -> list[str]:
    def line(cells: list[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *map(line, body)]


def _metric_keys(rows: list[RunRow]) -> list[str]:
    return [k for k in COLUMNS if k not in OPTIONAL or any(k in r.metrics for r in rows)]


def _show(row: RunRow, key: str) -> str:
    v = row.value(key)
    return "–" if math.isnan(v) else format(v, COLUMNS[key][1])


def _repeats_section(a: Analysis) -> list[str]:
    best = a.best or max(a.groups, key=Group.median)
    body = []
    for g in a.groups:
        v, s = g.values(), g.values(keys.SUMMARY_STEADY)
        if g is best:
            vs = "best"
        elif max(v) >= min(best.values()):
            vs = "not significant (ranges overlap)"
        else:
            vs = f"{g.median() / best.median() - 1:+.0%}"
        steady = [f"{g.median(keys.SUMMARY_STEADY):.0f}", f"{min(s):.0f}–{max(s):.0f}"] if s else []
        med = [f"{g.median():.0f}", f"{min(v):.0f}–{max(v):.0f}"]
        body.append([g.runs[0].name, len(g.runs), *med, *(steady or ["–", "–"]), vs])
    header = ["group", "n", "samples/s (median)", "min–max", "steady (median)", "min–max"]
    intro = "Runs identical but for bench.repeat. A difference from the best group is *not "
    intro += "significant* when the min–max ranges overlap."
    return ["## Repeats", "", intro, "", *_table([*header, "vs best"], body), ""]


def _recommendation(a: Analysis) -> list[str]:
    if not a.recommendation:
        return []
    code = [a.recommendation]
    if a.per_rank:  # several ranks: each builds this loader
        code.insert(0, f"# per rank ({a.per_rank.rsplit('; ', 1)[-1]})")
    out = ["## Use this", "", "```python", *code, "```", "", a.why, ""]
    if a.by_ranks:
        out += ["Fastest at each number of ranks (compare workers within one N):", ""]
        out += [f"- {line}" for line in a.by_ranks] + [""]
    return out


def search_line(a: Analysis) -> str:
    """How a tune sweep got its answer, in one sentence ("" for a grid)."""
    if not a.search:
        return ""
    n, probes = int(a.search.get(keys.TUNE_TRIALS, 0)), int(a.search.get(keys.TUNE_PROBES, 0))
    batches = {  # what the probes fetched (sized by the epoch: effective.probe_batches)
        r.params.get(keys.EFFECTIVE_PREFIX + "probe_batches", r.params.get(keys.PROBE_PARAM))
        for r in a.rows
        if r.probe
    }
    each = f" of {batches.pop()} batches an epoch" if len(batches) == 1 else ""
    line = (
        f"Tuned in {n} trials ({probes} probes{each}, ranked by their throughput projected to "
        f"full epochs, then {n - probes} full runs, which alone decide) in "
        f"{a.search.get(keys.TUNE_WALL, math.nan):.0f} s."
    )
    if skipped := int(a.search.get(keys.TUNE_SKIPPED, 0)):  # the cost cap bit: say what it cost
        grid = a.search.get(keys.TUNE_GRID_S, math.nan)
        line += (
            f" Probes here cost nearly a full run, so {skipped} candidates went unprobed to stay "
            f"within tune.cost_share of the grid's ~{grid:.0f} s."
        )
    return line


def _interval(row: RunRow) -> str:
    low, high = row.value(keys.SUMMARY_STEADY_LOW), row.value(keys.SUMMARY_STEADY_HIGH)
    return "–" if math.isnan(low) else f"{low:.0f}–{high:.0f}"


def _predictions(preds: list[Prediction]) -> list[str]:
    """Training throughput predicted from loader_only and model_only, against measured."""
    if not preds:
        return []
    c = preds[0].costs
    intro = (
        "Training samples/s predicted from the loader's ceiling at each setting and the "
        f"model's (c_load {c.c_load * 1e3:.3g} ms and c_step {c.c_step * 1e3:.3g} ms a sample, "
        f"the step keeping {c.step_cores:.2g} of {c.cores} cores busy with {c.threads} torch "
        "threads); the model is in loaderbench/report/predict.py."
    )
    body, doubts = [], list(dict.fromkeys(p.uncertain for p in preds if p.uncertain))
    for p in preds:
        measured = "–" if p.measured is None else f"{p.measured:.0f}"
        error = "–" if p.error is None else f"{p.error:+.1%}"
        if p.uncertain:
            error += f" (uncertain{'¹²³⁴⁵⁶⁷⁸⁹'[doubts.index(p.uncertain) % 9]})"
        body.append(
            [
                p.setting,
                f"{1 / p.costs.loader_s:.0f}",
                f"{p.predicted:.0f}",
                measured,
                error,
                p.limit,
            ]
        )
    header = ["setting", "loader_only", "predicted train", "measured train", "error", "bound"]
    notes = [f"{'¹²³⁴⁵⁶⁷⁸⁹'[i % 9]} {why}." for i, why in enumerate(doubts)]
    return [intro, "", *_table(header, body), "", *notes, *([""] if notes else [])]


def _feed(a: Analysis) -> list[str]:
    """An emulated sweep: fed or starved per step and setting, the ceiling, the predictions."""
    if a.feed is None:
        return []
    header, body = feed.table(a.feed)
    share = f"{feeding.FED_SHARE:.0%}"
    intro = (
        f"Fed: the step's steady wait for its batch is at most {share} of the step time "
        "(the wait per step, in ms, after each cell); starved otherwise."
    )
    out = ["## Feeding the step", "", intro, "", *_table(header, body), "", a.feed.ceiling, ""]
    if preds := a.emulated_predictions:
        out += [
            "Predicted from loader_only's time per batch L and the step T (one process at "
            "num_workers=0 with step_sync=step: L + T a batch; max(L, T) elsewhere), against "
            "measured; the model is in loaderbench/report/predict.py.",
            "",
        ]
        rows = [
            [
                p.setting, f"{p.step_ms:.3g}", p.sync, f"{p.loader_ms:.3g}", f"{p.predicted:.0f}",
                f"{p.measured:.0f}", f"{p.error:+.1%}", f"{p.wait_ms:.3g}",
                f"{p.measured_wait_ms:.3g}",
            ]
            for p in preds
        ]  # fmt: skip
        head = ["setting", "T (ms)", "step_sync", "L (ms)", "predicted samples/s"]
        head += ["measured", "error", "predicted wait (ms)", "measured wait (ms)"]
        out += [*_table(head, rows), ""]
    return out


def note(a: Analysis, links: list[str] = ()) -> str:
    """The parent run's description (``mlflow.note.content``, markdown the MLflow UI renders):
    the verdict, what to paste, and a compact table, so the UI shows the answer."""
    out = [f"**Verdict.** {a.verdict}", "", *_recommendation(a)]
    if line := search_line(a):
        out += [line, ""]
    body = [
        [
            r.name,
            *(r.params.get(k, "") for k in a.varied),
            _show(r, keys.SUMMARY_SAMPLES_PER_S),
            _interval(r),
            _show(r, keys.SUMMARY_DATA_WAIT),
            r.status,
        ]
        for r in a.rows
    ]
    header = ["run", *a.varied, "samples/s", "steady 95% interval", "data wait", "status"]
    if a.feed is not None:  # the answer, step by setting, before the runs
        out += _table(*feed.table(a.feed)) + [""]
    out += _table(header, body) + [""]
    out += _data_section(a)
    out += [f"Reproducibility: {a.reproducibility}.", "", *links]
    return "\n".join(out)


def _data_section(a: Analysis) -> list[str]:
    out = []
    if a.delivery:
        out += ["## ⚠ Samples not delivered exactly once", ""]
        out += [f"- {line}" for line in a.delivery] + [""]
    if a.idle:
        out += ["## Idle workers", "", *(f"- {line}" for line in a.idle), ""]
    return out


def markdown(a: Analysis) -> str:
    cols = _metric_keys(a.rows)
    out = [f"# Sweep report: {a.name}", "", f"**Verdict.** {a.verdict}", ""]
    out += _recommendation(a)
    if line := search_line(a):
        out += ["## Search", "", line, ""]
    out += _data_section(a)
    if a.warnings:
        out += ["## ⚠ Reproducibility warning", ""]
        out += ["Runs that differ only in loader settings should train identically, but:", ""]
        out += [f"- {w}" for w in a.warnings] + [""]
    body = []
    for r in a.rows:
        status = f"{r.status}: {r.error[:120]}" if r.error else r.status
        params = [r.params.get(k, "") for k in a.varied]
        body.append([r.name, *params, *(_show(r, k) for k in cols), status])
    header = ["run", *a.varied, *(COLUMNS[k][0] for k in cols), "status"]
    out += [f"## Runs ({len(a.rows)})", "", *_table(header, body), ""]
    if any(len(g.runs) > 1 for g in a.groups):
        out += _repeats_section(a)
    out += _feed(a)
    if a.ceilings or a.predictions:
        out += ["## Ceilings", "", *(f"- {c}" for c in a.ceilings), ""]
        out += _predictions(a.predictions)
    repro = f"Per-epoch {keys.LOSS_TRAIN} and {keys.ACC_VAL} across loader settings: {a.reproducibility}."
    out += ["## Reproducibility", "", repro, ""]
    if failed := [r for r in a.rows if not r.finished]:
        out += ["## Failures", ""]
        for r in failed:
            out.append(f"- **{r.name}** (`{r.run_id}`, {r.status}): {r.error or 'no error.txt'}")
        out.append("")
    return "\n".join(out)


def write_csv(path: Path, rows: list[RunRow], varied: list[str]) -> None:
    cols = _metric_keys(rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["run_name", "run_id", "status", *varied, *cols, "error"])
        for r in rows:  # full precision: repr() round-trips the stored float exactly
            metrics = [repr(r.metrics[k]) if k in r.metrics else "" for k in cols]
            params = [r.params.get(k, "") for k in varied]
            writer.writerow([r.name, r.run_id, r.status, *params, *metrics, r.error or ""])
