"""Does ``sweep=tune`` find what an exhaustive grid finds, for at most 0.15 of its cost?

    python scripts/bench_tune.py                    # four workloads, ~80 min on 2 cores
    python scripts/bench_tune.py --only shapes small

For each workload it runs, as a user would (``python run.py``, MLflow on SQLite in a temporary
folder), first ``sweep=tune``, then the exhaustive grid over the same knobs and values (fixed
here, as the tuner's defaults are): every num_workers from 0 to 2 × the cores, and with workers
every multiprocessing context × persistent_workers × prefetch_factor 2, 4 (num_workers=0 once:
torch ignores the worker knobs there), and loader threads (``loader.backend=threads``) at every
worker count × prefetch_factor 2, 4. Both run 2 epochs. G and T are the two commands' wall times. Then the two answers go
head to head: the grid's fastest setting (X) and the tuner's answer, the setting its report
recommends (Y), each run ``--rounds`` times as single jobs, alternately, compared by their
medians. (A grid's fastest run is the luckiest of 49 noisy runs, and the sweeps run minutes
apart: one run of each would measure luck and drift, not the tuner.) When both answers are the
same setting, it runs once and the quality is 1 by definition.

Workloads (trainer.epochs=2):

- ``tensor``: the article's workload, loading only (``bench.mode=loader_only``): in-memory
  tensors, 3,072 images of 3×224², transforms=none; workers only add IPC, and training a model
  on images that large would make every trial compute-bound;
- ``shapes``: the default job (generated shapes, basic transforms, SmallCNN);
- ``jpeg``: 2,048 JPEGs of 64² (written by scripts/make_imagefolder.py) with transforms=augment:
  decoding and augmenting is the bottleneck;
- ``small``: 1,600 JPEGs, 25 batches an epoch, transforms=augment: a small dataset, where a
  20-batch probe would cost nearly a full run (probes are sized by the epoch, and the cost cap
  leaves candidates unprobed where even those cost too much).

Prints ``<workload> grid best X/s in Gs; tune found Y/s in Ts; quality Y/X; cost T/G``. A
measurement, not a test: it always exits 0 once the runs have run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loaderbench.provenance import cpu_cores

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = ["trainer.epochs=2"]
WORKLOADS = {
    "tensor": [
        "bench.mode=loader_only",
        "dataset=tensor",
        "dataset.size=3072",
        "dataset.val_size=64",
        "dataset.image_size=224",
        "transforms=none",
    ],
    "shapes": [],
    "jpeg": ["dataset=imagefolder", "transforms=augment"],  # + dataset.root, made below
    "small": ["dataset=imagefolder", "transforms=augment"],  # + a folder of 1,600, made below
}
IMAGES = {"jpeg": 2048, "small": 1600}  # training images of the folder workloads


def grid_commands(overrides: list[str]) -> list[list[str]]:
    """The same knobs and values the tuner searches, every distinct combination."""
    workers = ",".join(str(w) for w in range(1, 2 * cpu_cores() + 1))
    return [
        ["-m", *overrides, "loader.num_workers=0"],
        [
            "-m",
            *overrides,
            f"loader.num_workers={workers}",
            "loader.multiprocessing_context=fork,spawn,forkserver",
            "loader.persistent_workers=false,true",
            "loader.prefetch_factor=2,4",
        ],
        [
            "-m",
            *overrides,
            "loader.backend=threads",
            f"loader.num_workers={workers}",
            "loader.prefetch_factor=2,4",
        ],
    ]


def run(args: list[str], tmp: Path, tag: str) -> tuple[float, str]:
    """One ``python run.py`` command: (wall seconds, its tracking URI)."""
    uri = f"sqlite:///{tmp / (tag + '.db')}"
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        *args,
        "trainer.progress=false",
        f"mlflow.tracking_uri={uri}",
        f"hydra.sweep.dir={tmp / tag}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: a combination failed; the rest still counts
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, uri


def analysis(uri: str):
    from loaderbench import store
    from loaderbench.report import analyze_sweep

    client = store.open_store(uri, must_exist=True)
    return analyze_sweep(client, store.latest_sweep(client))


KNOBS = (
    "loader.backend",
    "loader.num_workers",
    "loader.multiprocessing_context",
    "loader.persistent_workers",
    "loader.prefetch_factor",
)


def setting(row) -> list[str]:
    """The tuned knobs as a run ran them, as overrides (a knob left at null stays out)."""
    return [
        f"{k}={row.params[k]}" for k in KNOBS if row.params.get(k) not in (None, "None", "null")
    ]


def head_to_head(a: list[str], b: list[str], tmp: Path, tag: str, rounds: int) -> tuple:
    """Median summary samples/s of two settings, each a single ``python run.py`` job, run
    alternately (ABAB...), so a slow spell of the machine hits both alike."""
    from loaderbench import store

    values: dict[int, list[float]] = {0: [], 1: []}
    for r in range(rounds):
        for side in (0, 1) if r % 2 == 0 else (1, 0):
            uri = f"sqlite:///{tmp / (tag + '.db')}"
            cmd = [sys.executable, str(ROOT / "run.py"), *(a if side == 0 else b)]
            cmd += ["trainer.progress=false", f"mlflow.tracking_uri={uri}"]
            cmd += [f"hydra.run.dir={tmp / tag / str(len(values[0]) + len(values[1]))}"]
            subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
            client = store.open_store(uri, must_exist=True)
            (run,) = client.search_runs(
                [client.get_experiment_by_name("loaderbench").experiment_id],
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            values[side].append(run.data.metrics["summary/samples_per_s"])
    return statistics.median(values[0]), statistics.median(values[1])


def measure(name: str, overrides: list[str], tmp: Path, rounds: int) -> str:
    t_wall, t_uri = run(["sweep=tune", *overrides], tmp, f"{name}-tune")
    tuned = analysis(t_uri)
    found = tuned.pick.runs[0]
    g_wall, best = 0.0, None
    for i, args in enumerate(grid_commands(overrides)):
        wall, uri = run(args, tmp, f"{name}-grid{i}")
        g_wall += wall
        grid = analysis(uri)
        if grid.best is not None and (best is None or grid.best.median() > best.median()):
            best = grid.best
    print(f"  {name}: the tuner's verdict: {tuned.verdict}", flush=True)
    print(
        f"  {name}: in their sweeps, the grid's best {best.label} at {best.median():.0f}/s, "
        f"the tuner's answer {found.name} at {found.value('summary/samples_per_s'):.0f}/s",
        flush=True,
    )
    x_setting, y_setting = setting(best.runs[0]), setting(found)
    if x_setting == y_setting:
        x = y = head_to_head(overrides + x_setting, overrides + y_setting, tmp, name, 1)[0]
    else:
        x, y = head_to_head(overrides + x_setting, overrides + y_setting, tmp, name, rounds)
    return (
        f"{name} grid best {x:.0f}/s in {g_wall:.0f}s; tune found {y:.0f}/s in "
        f"{t_wall:.0f}s; quality {y / x:.3f}; cost {t_wall / g_wall:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    p.add_argument("--rounds", type=int, default=3, help="head-to-head runs of each answer (3)")
    a = p.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{cpu_cores()} cores, load average {load:.1f}", flush=True)
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench_tune-") as tmp:
        tmp = Path(tmp)
        for name in a.only:
            overrides = [*WORKLOADS[name], *EPOCHS]
            if name in IMAGES:
                folder = tmp / name
                make = [sys.executable, str(ROOT / "scripts" / "make_imagefolder.py")]
                make += ["--out", str(folder), "--count", str(IMAGES[name]), "--val-count", "256"]
                subprocess.run(make, check=True, capture_output=True)
                overrides.append(f"dataset.root={folder}")
            lines.append(measure(name, overrides, tmp, a.rounds))
            print(lines[-1], flush=True)
    print("\n".join(["", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
