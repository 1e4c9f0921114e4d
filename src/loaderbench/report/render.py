"""An :class:`~loaderbench.report.analysis.Analysis` as markdown, CSV and PNG plots.

Stored values are never rounded: only the markdown formats them; the CSV keeps full precision.
matplotlib is imported inside :func:`plot` only.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from loaderbench import keys
from loaderbench.report.analysis import Analysis
from loaderbench.report.predict import Prediction
from loaderbench.report.rows import Group, RunRow

WORKERS, REPEAT = keys.WORKERS_PARAM, keys.REPEAT_PARAM
COLUMNS = {  # summary key -> (table header, display format); the table shows them in this order
    keys.SUMMARY_SAMPLES_PER_S: ("samples/s", ".0f"),
    keys.SUMMARY_PROJECTED: ("projected samples/s (probe)", ".0f"),
    keys.SUMMARY_STEADY: ("steady samples/s", ".0f"),
    keys.SUMMARY_FIRST_BATCH: ("first batch (s)", ".3g"),
    keys.SUMMARY_DATA_WAIT: ("data wait", ".1%"),
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
    return ["## Use this", "", "```python", a.recommendation, "```", "", a.why, ""]


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
    body = []
    for p in preds:
        measured = "–" if p.measured is None else f"{p.measured:.0f}"
        error = "–" if p.error is None else f"{p.error:+.1%}"
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
    return [intro, "", *_table(header, body), ""]


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


def plot(a: Analysis, key: str, scale: float, ylabel: str, title: str, path: Path) -> None:
    """``key`` against num_workers, a line per combination of the other varied params; a bar
    per run when num_workers does not vary. FINISHED runs only; repeats as median + range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in a.rows if r.finished and not math.isnan(r.value(key))]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if WORKERS in a.varied and all(r.params.get(WORKERS, "").isdigit() for r in rows):
        series: dict[str, dict[int, list[float]]] = {}
        others = [k for k in a.varied if k not in (WORKERS, REPEAT)]
        for r in rows:
            label = ", ".join(f"{k}={r.params.get(k, '')}" for k in others) or "all runs"
            points = series.setdefault(label, {}).setdefault(int(r.params[WORKERS]), [])
            points.append(r.value(key) * scale)
        for label, pts in series.items():
            xs = sorted(pts)
            med = [statistics.median(pts[x]) for x in xs]
            err = [[m - min(pts[x]) for x, m in zip(xs, med, strict=True)]]
            err += [[max(pts[x]) - m for x, m in zip(xs, med, strict=True)]]
            ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=label)
        ax.set_xlabel("loader.num_workers (worker processes)")
        ax.set_xticks(sorted({int(r.params[WORKERS]) for r in rows}))
        ax.legend(fontsize="small")
    else:
        ax.bar([r.name for r in rows], [r.value(key) * scale for r in rows])
        ax.set_xlabel("run")
        ax.tick_params(axis="x", labelrotation=30)
    ax.set(ylabel=ylabel, title=title)
    ax.set_ylim(bottom=0)  # an honest scale: small differences should look small
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def trials_plot(a: Analysis, path: Path) -> None:
    """A tune sweep's trials in the order they ran: a probe's projected throughput, a full
    run's measured one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(a.rows)), 4.5))
    for i, r in enumerate(a.rows):
        value = r.value(keys.SUMMARY_PROJECTED if r.probe else keys.SUMMARY_SAMPLES_PER_S)
        if r.finished and not math.isnan(value):
            ax.bar(i, value, color="tab:gray" if r.probe else "tab:blue")
    kinds = [("tab:gray", "probe (projected to full epochs)"), ("tab:blue", "full run (measured)")]
    handles = [Patch(color=color, label=label) for color, label in kinds]
    ax.set_xticks(range(len(a.rows)), [r.name for r in a.rows], rotation=60, ha="right")
    ax.set(ylabel="training throughput (samples/s)", title=f"{a.name}: trials in order")
    ax.set_ylim(bottom=0)
    ax.legend(handles=handles, loc="lower left", fontsize="small", framealpha=0.9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plots(a: Analysis, out: Path) -> list[Path]:
    """throughput.png and stall.png in ``out`` (of the full runs), and a tune sweep's
    trials.png."""
    paths = [out / keys.THROUGHPUT_PNG, out / keys.STALL_PNG]
    full = replace(a, rows=[r for r in a.rows if not r.probe])
    tput = "training throughput (samples/s, data waiting included)"
    plot(full, keys.SUMMARY_SAMPLES_PER_S, 1.0, tput, f"{a.name}: throughput", paths[0])
    stall = "time blocked waiting for data (% of training time)"
    plot(full, keys.SUMMARY_DATA_WAIT, 100.0, stall, f"{a.name}: data stall", paths[1])
    if any(r.probe for r in a.rows):
        paths.append(out / keys.TRIALS_PNG)
        trials_plot(a, paths[-1])
    return paths
