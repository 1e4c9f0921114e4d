"""Does loaderbench change what it measures? The whole job against a bare loop, each in its own
process.

    python scripts/bench_overhead.py                 # 8 workloads x 5 rounds + a sweep, ~45 min
    python scripts/bench_overhead.py --rounds 5 --only tensor-w0 jpeg5-t4
    python scripts/bench_overhead.py --rounds 7 --epochs 8 --only custom-w0 custom-w2

Each round runs, in alternating order, ``python run.py ...`` exactly as a user would (memory
sampling at its default, MLflow on a SQLite store in a temporary directory) and
``scripts/bare_loop.py`` (the library's own loop in a fresh process: a stock DataLoader, or the
thread library's own pipeline; no loaderbench code in the timed path). Both report the median
per-epoch throughput after epoch 0, waiting for data included; the figure is the median of the
rounds' ratios, with their spread (lowest–highest) beside it. ``--epochs`` sets both sides' epochs
(3, the job's default, unless given): an epoch of 2,000 samples lasts 1–2 s here, and single
epochs move by ±10% on a shared VM, so more epochs per round give a steadier median. Workloads:

- ``tensor-w0`` / ``tensor-w2``: loader_only over the article's in-memory TensorDataset (2,048
  images of 3x224x224, batch 64, transforms=none) with num_workers 0 and 2;
- ``train``: the default job (shapes, Basic transforms, SmallCNN, 3 epochs, num_workers 0);
- ``custom-w0`` / ``custom-w2``: a user's own Dataset, examples/mypkg's ``PackedJpegs`` (2,000
  JPEGs of 64² packed in one file, Basic transforms), loader_only, against the same Dataset in
  a bare DataLoader loop;
- ``jpeg-t4`` / ``jpeg5-t4``: loader threads (``loader.backend=threads``, 4 threads) over a
  folder of 1,600 JPEGs with transforms=augment, loader_only, without and with
  ``dataset.read_latency_ms=5``, against torchdata.nodes' own pipeline at 4 threads;
  ``jpeg5-t4-spdl``: the same job against SPDL's own pipeline at 4 threads.

Then it runs a 4-job sweep and prints the per-job overhead: the time from one job's end to the
next one's, less that job's set-up (dataset, model, loaders), epochs and evaluation. That is
Hydra's job set-up, opening the run, logging, the sampler's start and stop.

``--bare-holds-tracking`` is a diagnostic: every bare loop first imports MLflow and opens a SQLite
store, as the job's process did before the tracking process kept MLflow out of it
(``bare_loop.py --hold-tracking``): what holding them costs a loop that forks its workers every
epoch (docs/results.md: forking a bigger process, per worker per epoch).

Prints ``<workload> bare X/s loaderbench Y/s ratio R`` per workload, the lowest ratio last,
then the per-job overhead. Always exits 0: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TENSOR = [
    "bench.mode=loader_only",
    "dataset=tensor",
    "dataset.size=2048",
    "dataset.val_size=64",
    "dataset.image_size=224",
    "dataset.num_classes=10",
    "transforms=none",
]
BARE_TENSOR = ["tensor", "--size", "2048", "--image-size", "224", "--num-classes", "10"]
MYPKG = ROOT / "examples" / "mypkg"
ONLY_LOADER = ["bench.mode=loader_only", "dataset.image_size=64"]


def workloads(folder: Path, packed: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (run.py overrides, bare_loop.py arguments); ``folder``: the JPEG folder,
    ``packed``: mypkg's data."""
    custom = [*ONLY_LOADER, "dataset=custom", "dataset.target=mypkg.data.PackedJpegs"]
    custom += [f"+dataset.kwargs.root={packed}", "+dataset.val_kwargs.split=val"]
    custom += ["dataset.size=null", "dataset.val_size=null", "transforms=basic"]
    jpeg = [*ONLY_LOADER, "dataset=imagefolder", f"dataset.root={folder}", "transforms=augment"]
    jpeg += ["loader.backend=threads", "loader.num_workers=4"]
    bare_jpeg = ["folder", "--root", str(folder), "--transforms", "augment", "--num-workers", "4"]
    slow = ["dataset.read_latency_ms=5"], ["--read-latency-ms", "5"]
    return {
        "tensor-w0": ([*TENSOR, "loader.num_workers=0"], [*BARE_TENSOR, "--num-workers", "0"]),
        "tensor-w2": ([*TENSOR, "loader.num_workers=2"], [*BARE_TENSOR, "--num-workers", "2"]),
        "train": ([], ["shapes", "--mode", "train"]),
        "custom-w0": ([*custom, "loader.num_workers=0"], ["custom", "--root", str(packed)]),
        "custom-w2": (
            [*custom, "loader.num_workers=2"],
            ["custom", "--root", str(packed), "--num-workers", "2"],
        ),
        "jpeg-t4": (jpeg, [*bare_jpeg, "--loop", "nodes"]),
        "jpeg5-t4": ([*jpeg, *slow[0]], [*bare_jpeg, *slow[1], "--loop", "nodes"]),
        "jpeg5-t4-spdl": ([*jpeg, *slow[0]], [*bare_jpeg, *slow[1], "--loop", "spdl"]),
    }


NAMES = list(workloads(Path("."), Path(".")))


def _env() -> dict[str, str]:
    """mypkg importable in the jobs and the bare loops (as a user's PYTHONPATH would have it)."""
    path = os.pathsep.join(p for p in (str(MYPKG), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _client(uri: str):
    from loaderbench.store import open_store

    return open_store(uri, must_exist=True)


def loaderbench_job(overrides: list[str], tmp: Path, n: int) -> dict[str, float]:
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        *overrides,
        "trainer.progress=false",
        f"mlflow.tracking_uri={uri}",
        f"hydra.run.dir={tmp / f'run-{n}'}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp, env=_env())
    client = _client(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("loaderbench").experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return run.data.metrics


def bare_job(args: list[str]) -> float:
    cmd = [sys.executable, str(ROOT / "scripts" / "bare_loop.py"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:  # it never measured: the error, as is
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    if proc.returncode:  # its figure was printed, then the process died on its way out
        print(f"  (bare loop exited {proc.returncode} after its figure)", file=sys.stderr)
    return json.loads(lines[-1])["steady_samples_per_s"]


def measure(name: str, rounds: int, tmp: Path, work: dict, epochs: int | None = None) -> tuple:
    overrides, bare_args = work[name]
    if epochs is not None:  # both sides alike
        overrides, bare_args = (
            [*overrides, f"trainer.epochs={epochs}"],
            [*bare_args, "--epochs", str(epochs)],
        )
    bare, ours, monitor = [], [], []
    for r in range(rounds):
        # Alternate the order, so a slow spell of the machine hits both sides alike.
        for side in ("bare", "ours") if r % 2 == 0 else ("ours", "bare"):
            if side == "bare":
                bare.append(bare_job(bare_args))
            else:
                m = loaderbench_job(overrides, tmp, len(ours) + 100 * len(monitor))
                ours.append(m["summary/steady_samples_per_s"])
                monitor.append(m["overhead/monitor_cpu_fraction"])
        print(f"  {name} round {r}: bare {bare[-1]:.0f}/s loaderbench {ours[-1]:.0f}/s", flush=True)
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    return statistics.median(bare), statistics.median(ours), monitor, ratios


def sweep_overhead(tmp: Path) -> list[float]:
    """Per-job overhead of jobs 1.. of a 4-job sweep (job 0 also pays the imports)."""
    uri = f"sqlite:///{tmp / 'sweep.db'}"
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        "-m",
        "+bench.repeat=0,1,2,3",
        "dataset.size=1024",
        "dataset.val_size=256",
        "trainer.epochs=2",
        "trainer.progress=false",
        f"mlflow.tracking_uri={uri}",
        f"hydra.sweep.dir={tmp / 'sweep'}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
    client = _client(uri)
    exp = client.get_experiment_by_name("loaderbench").experiment_id
    runs = client.search_runs(
        [exp], "tags.`loaderbench.role` = 'job'", order_by=["attributes.start_time ASC"]
    )
    out = []
    for prev, run in zip(runs, runs[1:], strict=False):
        work = run.data.metrics["time/setup_s"]
        for key in ("time/epoch_s", "time/eval_s"):
            work += sum(m.value for m in client.get_metric_history(run.info.run_id, key))
        out.append((run.info.end_time - prev.info.end_time) / 1000 - work)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, help="epochs per run, both sides (default: the job's 3)")
    p.add_argument("--only", nargs="+", choices=sorted(NAMES), default=NAMES)
    p.add_argument("--no-sweep", action="store_true", help="skip the per-job overhead sweep")
    p.add_argument(
        "--bare-holds-tracking", action="store_true", help="diagnostic: see the docstring"
    )
    a = p.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    epochs = f", {a.epochs} epochs a run" if a.epochs else ""
    print(f"{os.cpu_count()} cpus, load average {load:.1f}; {a.rounds} rounds, alternating{epochs}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="lb-overhead-") as tmp:
        folder, packed = Path(tmp) / "jpeg", Path(tmp) / "packed"
        make = [sys.executable, "-m", "loaderbench.make_imagefolder", "--out", str(folder)]
        subprocess.run(
            [*make, "--count", "1600", "--val-count", "256"], check=True, capture_output=True
        )  # noqa: E501
        subprocess.run(
            [sys.executable, "-m", "mypkg.make_data", "--out", str(packed)],
            check=True, capture_output=True, env=_env(),
        )  # fmt: skip
        work = workloads(folder, packed)
        if a.bare_holds_tracking:
            work = {k: (ours, [*bare, "--hold-tracking"]) for k, (ours, bare) in work.items()}
        for name in a.only:
            bare, ours, monitor, ratios = measure(name, a.rounds, Path(tmp), work, a.epochs)
            results[name] = (bare, ours, statistics.median(ratios), max(monitor), ratios)
        overheads = [] if a.no_sweep else sweep_overhead(Path(tmp))
    print()
    for name, (bare, ours, ratio, mon, ratios) in results.items():
        print(
            f"{name} bare {bare:.0f}/s loaderbench {ours:.0f}/s ratio {ratio:.3f} "
            f"(rounds {min(ratios):.3f}–{max(ratios):.3f})"
            f"  (sampler CPU at most {mon:.2%} of the run)"
        )
    worst = min(results, key=lambda k: results[k][2])
    print(f"lowest ratio: {results[worst][2]:.3f} ({worst})")
    if overheads:
        print(
            f"per-job sweep overhead: median {statistics.median(overheads):.2f} s "
            f"(jobs 2-4 of a 4-job sweep: {', '.join(f'{o:.2f}' for o in overheads)} s; "
            "job wall minus set-up, epochs and evaluation)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
