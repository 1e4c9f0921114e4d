"""A sweep's PNG plots: throughput and stall against num_workers, a tune sweep's trials.

matplotlib is imported inside the functions only (the report imports this module always).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

from loaderbench import keys
from loaderbench.report.analysis import Analysis

WORKERS, REPEAT = keys.WORKERS_PARAM, keys.REPEAT_PARAM


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
