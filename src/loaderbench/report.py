"""The sweep report: read a sweep's runs from the tracking store, say which loader setting won.

A sweep is a parent run (tag ``loaderbench.role=sweep``) and its children (tag
``mlflow.parentRunId``). :func:`write_report` writes ``report.md``, ``report.csv``,
``throughput.png`` and ``stall.png``; :func:`publish_report` attaches them to the parent with
the ``sweep/*`` metrics and the verdict / reproducibility tags. mlflow and matplotlib are
imported inside functions only. Stored values are never rounded: only the markdown formats.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loaderbench import keys
from loaderbench import store as t

log = logging.getLogger(__name__)

WORKERS, MODE, REPEAT = "loader.num_workers", "bench.mode", "bench.repeat"
MODES = ("train", "loader_only", "model_only")
WORKER_ONLY = (
    "loader.multiprocessing_context",
    "loader.persistent_workers",
    "loader.prefetch_factor",
)
NOT_KNOBS = ("effective.", "data.", "mlflow.", "hydra.")  # derived, or where results go
HISTORIES = (keys.LOSS_TRAIN, keys.ACC_VAL)
COLUMNS = {  # summary key -> (table header, display format); the table shows them in this order
    keys.SUMMARY_SAMPLES_PER_S: ("samples/s", ".0f"),
    keys.SUMMARY_STEADY: ("steady samples/s", ".0f"),
    keys.SUMMARY_FIRST_BATCH: ("first batch (s)", ".3g"),
    keys.SUMMARY_DATA_WAIT: ("data wait", ".1%"),
    keys.PEAK_RSS: ("peak RSS (MB)", ".0f"),
    keys.PEAK_PSS: ("peak PSS (MB)", ".0f"),
    keys.WORKERS_PSS: ("workers PSS (MB)", ".0f"),
    keys.CPU_UTILIZATION: ("CPU (cores busy)", ".3g"),
    keys.SUMMARY_VAL_ACC: ("val acc", ".1%"),
}
OPTIONAL = (
    keys.PEAK_PSS,
    keys.WORKERS_PSS,
    keys.CPU_UTILIZATION,
)  # columns only when a run has them


class SweepNotFound(LookupError):
    """The run id does not exist, or is not the parent run of a sweep."""


@dataclass
class RunRow:
    """One child run: what the store says, plus its error line and per-epoch histories."""

    run_id: str
    name: str
    status: str  # FINISHED, FAILED, KILLED, RUNNING
    params: dict[str, str]
    metrics: dict[str, float]
    error: str | None = None
    histories: dict[str, list[float]] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    @property
    def mode(self) -> str:
        return self.params.get(MODE, "train")

    def value(self, key: str) -> float:
        return self.metrics.get(key, math.nan)


@dataclass
class Group:
    """FINISHED runs identical except for ``bench.repeat`` (n=1 without repeats)."""

    key: tuple[tuple[str, str], ...]
    runs: list[RunRow]

    def values(self, key: str = keys.SUMMARY_SAMPLES_PER_S) -> list[float]:
        return [v for r in self.runs if not math.isnan(v := r.value(key))]

    def median(self, key: str = keys.SUMMARY_SAMPLES_PER_S) -> float:
        return statistics.median(vals) if (vals := self.values(key)) else math.nan

    @property
    def label(self) -> str:
        n, name = len(self.runs), self.runs[0].name
        if n == 1:
            return name
        group = re.sub(r" repeat=\S+", "", name)  # the group's name, not its first run's
        return f"{group} (median of {n})"

    def without(self, *params: str) -> tuple:
        return tuple(kv for kv in self.key if kv[0] not in params)


@dataclass
class ReportResult:
    """The analysed sweep; the paths are set by :func:`write_report`."""

    name: str
    rows: list[RunRow]
    varied: list[str]  # configured params that differ across the children
    groups: list[Group]
    best: Group | None  # the verdict's combination
    verdict: str
    warnings: list[str]  # reproducibility mismatches
    reproducibility: str  # the REPRO_TAG value: identical / mismatch: ... / n/a
    ceilings: list[str]
    efficiencies: list[float] = field(default_factory=list)  # one per ceilings line
    markdown: str = ""
    markdown_path: Path | None = None
    csv_path: Path | None = None
    plot_paths: list[Path] = field(default_factory=list)

    @property
    def n_runs(self) -> int:
        return len(self.rows)

    @property
    def n_failed(self) -> int:
        return sum(r.status in ("FAILED", "KILLED") for r in self.rows)

    @property
    def best_samples_per_s(self) -> float | None:
        """The verdict's figure (the median when the best combination has repeats)."""
        return self.best.median() if self.best else None


# --- reading the store --------------------------------------------------------------------
def open_client(tracking_uri: str) -> Any:
    t.quiet_mlflow_logging()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def find_latest_sweep(client: Any) -> str:
    """Id of the most recently started run tagged ``loaderbench.role=sweep``, any experiment."""
    from mlflow.entities import ViewType

    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    query = f"tags.`{keys.ROLE_TAG}` = 'sweep'"
    order = ["attributes.start_time DESC"]
    runs = client.search_runs(ids, query, ViewType.ALL, 1, order) if ids else []
    if not runs:
        raise SweepNotFound(f"no sweep (run tagged {keys.ROLE_TAG}=sweep) in {client.tracking_uri}")
    return runs[0].info.run_id


def _error_line(client: Any, run_id: str) -> str | None:
    """The exception line of the run's ``error.txt`` (a traceback's last line), if any."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            text = Path(client.download_artifacts(run_id, keys.ERROR_ARTIFACT, tmp)).read_text()
    except Exception as exc:  # no error.txt, or an unreachable artifact store: keep the row
        log.debug("no error.txt for run %s: %s", run_id, exc)
        return None
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("Traceback"):
        lines = [ln for ln in lines if not ln[0].isspace()][-1:]
    return lines[0] if lines else None


def _history(client: Any, run_id: str, key: str) -> list[float]:
    metrics = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    by_step = {m.step: m.value for m in metrics}  # a step logged twice keeps its last value
    return [by_step[s] for s in sorted(by_step)]


def load_sweep(client: Any, parent_run_id: str) -> tuple[str, list[RunRow]]:
    """(sweep name, children in start order) of a sweep's parent run."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    try:
        parent = client.get_run(parent_run_id)
    except MlflowException as exc:
        raise SweepNotFound(f"run {parent_run_id} not found in {client.tracking_uri}") from exc
    if parent.data.tags.get(keys.ROLE_TAG) != "sweep":
        raise SweepNotFound(f"run {parent_run_id} is not a sweep parent (no {keys.ROLE_TAG}=sweep)")
    query = f"tags.`{keys.PARENT_TAG}` = '{parent_run_id}'"
    order, exp = ["attributes.start_time ASC"], [parent.info.experiment_id]
    runs, token = [], None
    while True:
        page = client.search_runs(exp, query, ViewType.ALL, 1000, order, page_token=token)
        runs += list(page)
        if not (token := page.token):
            break
    rows = []
    for run in runs:
        info, data = run.info, run.data
        row = RunRow(info.run_id, info.run_name or info.run_id[:8], info.status, data.params, {})
        row.metrics = dict(data.metrics)
        if not row.finished:
            row.error = _error_line(client, row.run_id)
        elif row.mode == "train":
            hists = {key: _history(client, row.run_id, key) for key in HISTORIES}
            row.histories = {key: h for key, h in hists.items() if h}
        rows.append(row)
    return parent.info.run_name or parent_run_id, rows


# --- analysis -----------------------------------------------------------------------------
def varied_params(rows: list[RunRow]) -> list[str]:
    """Configured params whose values differ across the runs (``effective.*`` left out)."""
    names = sorted({k for r in rows for k in r.params if not k.startswith(NOT_KNOBS)})
    return [k for k in names if len({r.params.get(k) for r in rows}) > 1]


def group_repeats(rows: list[RunRow], varied: list[str]) -> list[Group]:
    """FINISHED runs grouped by every varied param but ``bench.repeat``, in first-run order."""
    groups: dict[tuple, Group] = {}
    for row in (r for r in rows if r.finished):
        key = tuple((k, row.params.get(k, "")) for k in varied if k != REPEAT)
        groups.setdefault(key, Group(key, [])).runs.append(row)
    return [g for g in groups.values() if g.values()]


def make_verdict(groups: list[Group]) -> tuple[str, Group | None]:
    """One sentence on the fastest training combination (by median samples/s over repeats)."""
    cands = [g for g in groups if g.runs[0].mode == "train"] or groups
    if not cands:
        return "No run finished, so there is no fastest combination.", None
    best = max(cands, key=Group.median)
    head = f"Fastest: {best.label} at {best.median():.0f} samples/s"
    if len(cands) == 1:
        return head + ", the only training combination here: nothing to compare it with.", best
    w0 = [g for g in cands if g.runs[0].params.get(WORKERS) == "0"]
    if not w0:
        return head + " (no num_workers=0 run in this sweep to compare with).", best
    if best in w0:
        rest = [g for g in cands if g not in w0]
        nxt = max(rest, key=Group.median) if rest else None
        tail = f"; next: {nxt.label} at {nxt.median():.0f} samples/s" if nxt else ""
        return f"{head}: num_workers=0 was fastest here{tail}.", best
    same = [g for g in w0 if g.without(WORKERS) == best.without(WORKERS)]
    idle = (WORKERS, *WORKER_ONLY)  # else ignore the settings that do nothing without workers
    same = same or [g for g in w0 if g.without(*idle) == best.without(*idle)]
    ref, which = (max(same or w0, key=Group.median), "matching" if same else "fastest")
    ratio = best.median() / ref.median() if ref.median() > 0 else math.inf
    sentence = f"{head}, {ratio:.2f}× the {which} num_workers=0 run"
    return f"{sentence} ({ref.label}, {ref.median():.0f} samples/s).", best


def _compare(a: RunRow, b: RunRow, key: str) -> str | None:
    x, y = a.histories[key], b.histories[key]
    if len(x) != len(y):
        return f"{key}: {a.name} has {len(x)} epochs, {b.name} has {len(y)}"
    for i, (u, v) in enumerate(zip(x, y, strict=True)):
        if u != v:  # to the last bit: the same seed must give the same numbers
            return f"{key} differs between {a.name} and {b.name} at epoch {i}: {u!r} vs {v!r}"
    return None


def check_reproducibility(rows: list[RunRow], varied: list[str]) -> tuple[list[str], str]:
    """FINISHED train runs differing only in ``loader.*``/``effective.*``/``bench.repeat`` must
    have identical loss/accuracy histories. Returns (warnings, tag value)."""
    groups: dict[tuple, list[RunRow]] = {}
    for row in (r for r in rows if r.finished and r.mode == "train" and r.histories):
        skip = (REPEAT, *(k for k in varied if k.startswith("loader.")))
        key = tuple((k, row.params.get(k, "")) for k in varied if k not in skip)
        groups.setdefault(key, []).append(row)
    warnings, compared = [], False
    for ref, *others in (g for g in groups.values() if len(g) > 1):
        for other in others:
            for key in (k for k in HISTORIES if k in ref.histories and k in other.histories):
                compared = True
                if problem := _compare(ref, other, key):
                    warnings.append(problem)
    if warnings:
        return warnings, ("mismatch: " + "; ".join(warnings))[:4000]
    return warnings, "identical" if compared else "n/a"


def find_ceilings(groups: list[Group]) -> tuple[list[str], list[float]]:
    """Pipeline efficiency wherever train, loader_only and model_only ran with one setting:
    a sentence naming the bottleneck, and the efficiency, per setting."""
    by_setting: dict[tuple, dict[str, Group]] = {}
    for g in groups:
        by_setting.setdefault(g.without(MODE), {})[g.runs[0].mode] = g
    lines, efficiencies = [], []
    for modes in (m for m in by_setting.values() if set(MODES) <= m.keys()):
        train, loader, model = (modes[m].median() for m in MODES)
        if min(loader, model) <= 0:
            continue
        if loader < model:
            why = f"input-bound: the loader alone delivers {loader:.0f} samples/s, "
            why += f"the model alone could take {model:.0f}"
        else:
            why = f"compute-bound: the model alone takes {model:.0f} samples/s, "
            why += f"the loader alone could deliver {loader:.0f}"
        efficiencies.append(train / min(loader, model))
        eff = f"{train:.0f} ÷ {min(loader, model):.0f} = {efficiencies[-1]:.0%}"
        setting = ", ".join(f"{k}={v}" for k, v in modes["train"].without(MODE))
        setting = setting or re.sub(r" mode=\S+", "", modes["train"].label)
        lines.append(
            f"{setting}: pipeline efficiency = train samples/s ÷ "
            f"min(loader_only, model_only) = {eff}; {why}."
        )
    return lines, efficiencies


def analyze_sweep(client: Any, parent_run_id: str) -> ReportResult:
    """Everything the report says, with the markdown; no files."""
    name, rows = load_sweep(client, parent_run_id)
    varied = varied_params(rows)
    groups = group_repeats(rows, varied)
    verdict, best = make_verdict(groups)
    warnings, repro = check_reproducibility(rows, varied)
    ceilings, efficiencies = find_ceilings(groups)
    a = ReportResult(
        name, rows, varied, groups, best, verdict, warnings, repro, ceilings, efficiencies
    )
    a.markdown = render_markdown(a)
    return a


# --- output -------------------------------------------------------------------------------
def _table(header: list[str], body: list[list[Any]]) -> list[str]:
    def line(cells: list[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *map(line, body)]


def _metric_keys(rows: list[RunRow]) -> list[str]:
    return [k for k in COLUMNS if k not in OPTIONAL or any(k in r.metrics for r in rows)]


def _show(row: RunRow, key: str) -> str:
    v = row.value(key)
    return "–" if math.isnan(v) else format(v, COLUMNS[key][1])


def _repeats_section(a: ReportResult) -> list[str]:
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


def render_markdown(a: ReportResult) -> str:
    cols = _metric_keys(a.rows)
    out = [f"# Sweep report: {a.name}", "", f"**Verdict.** {a.verdict}", ""]
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
    if a.ceilings:
        out += ["## Ceilings", "", *(f"- {c}" for c in a.ceilings), ""]
    repro = f"Per-epoch {keys.LOSS_TRAIN} and {keys.ACC_VAL} across loader settings: {a.reproducibility}."
    out += ["## Reproducibility", "", repro, ""]
    if failed := [r for r in a.rows if not r.finished]:
        out += ["## Failures", ""]
        for r in failed:
            out.append(f"- **{r.name}** (`{r.run_id}`, {r.status}): {r.error or 'no error.txt'}")
        out.append("")
    return "\n".join(out)


def report_markdown(parent_run_id: str, client: Any) -> str:
    """The report as markdown (for a terminal); writes nothing."""
    return analyze_sweep(client, parent_run_id).markdown


def write_csv(path: Path, rows: list[RunRow], varied: list[str]) -> None:
    cols = _metric_keys(rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["run_name", "run_id", "status", *varied, *cols, "error"])
        for r in rows:  # full precision: repr() round-trips the stored float exactly
            metrics = [repr(r.metrics[k]) if k in r.metrics else "" for k in cols]
            params = [r.params.get(k, "") for k in varied]
            writer.writerow([r.name, r.run_id, r.status, *params, *metrics, r.error or ""])


def _plot(a: ReportResult, key: str, scale: float, ylabel: str, title: str, path: Path) -> None:
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


def write_report(parent_run_id: str, client: Any, out_dir: str | Path) -> ReportResult:
    """Analyse the sweep and write report.md, report.csv, throughput.png and stall.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a = analyze_sweep(client, parent_run_id)
    a.markdown_path, a.csv_path = out / "report.md", out / "report.csv"
    a.markdown_path.write_text(a.markdown + "\n", encoding="utf-8")
    write_csv(a.csv_path, a.rows, a.varied)
    a.plot_paths = [out / "throughput.png", out / "stall.png"]
    tput = "training throughput (samples/s, data waiting included)"
    _plot(a, keys.SUMMARY_SAMPLES_PER_S, 1.0, tput, f"{a.name}: throughput", a.plot_paths[0])
    stall = "time blocked waiting for data (% of training time)"
    _plot(a, keys.SUMMARY_DATA_WAIT, 100.0, stall, f"{a.name}: data stall", a.plot_paths[1])
    for w in a.warnings:
        log.warning("reproducibility: %s", w)
    return a


def publish_report(parent_run_id: str, client: Any, result: ReportResult) -> None:
    """Attach the report files to the parent run, with the sweep/* metrics and the tags."""
    from mlflow.entities import Metric, RunTag

    for path in (result.markdown_path, result.csv_path, *result.plot_paths):
        if path is not None and path.exists():
            client.log_artifact(parent_run_id, str(path))
    values = {keys.SWEEP_N_RUNS: result.n_runs, keys.SWEEP_N_FAILED: result.n_failed}
    if result.best_samples_per_s is not None:
        values[keys.SWEEP_BEST] = result.best_samples_per_s
    now = int(1000 * time.time())
    metrics = [Metric(k, float(v), now, 0) for k, v in values.items()]
    # one value per setting that ran all three modes, in the report's order (step = its index)
    metrics += [Metric(keys.SWEEP_EFFICIENCY, e, now, i) for i, e in enumerate(result.efficiencies)]
    tags = [
        RunTag(keys.VERDICT_TAG, result.verdict),
        RunTag(keys.REPRO_TAG, result.reproducibility),
    ]
    if result.ceilings:
        tags.append(RunTag(keys.CEILINGS_TAG, "; ".join(result.ceilings)[:4000]))
    client.log_batch(parent_run_id, metrics=metrics, tags=tags)
