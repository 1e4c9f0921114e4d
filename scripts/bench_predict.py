"""How well do the two ceilings predict training? Measured on a grid, two workloads.

    python scripts/bench_predict.py                 # 2 workloads x 6 settings, ~10 min on 2 cores
    python scripts/bench_predict.py --quick         # a check that it all runs, ~3 min
    python scripts/bench_predict.py --analyse outputs/bench_predict/<time>   # re-read, no runs

For each workload it runs, as a user would (``python run.py``, MLflow on a SQLite store):
1. one sweep over the grid (``loader.num_workers`` x ``loader.multiprocessing_context``) in
   ``bench.mode=loader_only`` and ``train``, the two modes of a setting back to back;
2. one ``bench.mode=model_only`` run.
Then ``loaderbench.report.predict`` predicts each setting's training throughput from the
loader_only runs and the model_only run alone, and this prints predicted against measured per
setting and the largest relative error. Workloads:

- ``jpeg``: decode-bound: the shapes as JPEG files (scripts/make_imagefolder.py), the augment
  transforms, small_cnn;
- ``tensor``: compute-bound: in-memory float tensors (transforms=none), resnet18.

Everything stays in ``--out`` (the store, the sweeps, the JPEGs). Timing figures need an idle
machine: run nothing else meanwhile. Always exits 0: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # make_imagefolder, as a module

WORKLOADS = {
    "jpeg": ["dataset=imagefolder", "transforms=augment", "model=small_cnn"],
    "tensor": [
        "dataset=tensor",
        "dataset.image_size=64",
        "dataset.num_classes=10",
        "transforms=none",
        "model=resnet18",
    ],
}
SIZES = {  # workload -> (full, quick): training samples, validation samples
    "jpeg": ((2048, 256), (512, 64)),
    "tensor": ((1024, 128), (256, 64)),
}


def _run(args: list[str], log: Path) -> None:
    cmd = [sys.executable, str(ROOT / "run.py"), *args]
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        print(f"  (exit {proc.returncode}; see {log})", flush=True)


def measure(name: str, out: Path, a: argparse.Namespace) -> None:
    (train, val) = SIZES[name][1 if a.quick else 0]
    common = [*WORKLOADS[name], f"trainer.epochs={a.epochs}", "trainer.progress=false"]
    common += [f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}", f"mlflow.experiment={name}"]
    if name == "jpeg":
        folder = out / "shapes-jpeg"
        if not folder.exists():
            import make_imagefolder

            make_imagefolder.main(
                ["--out", str(folder), "--count", str(train), "--val-count", str(val)]
            )
        common.append(f"dataset.root={folder}")
    else:
        common += [f"dataset.size={train}", f"dataset.val_size={val}"]
    grid = [f"loader.num_workers={a.workers}", f"loader.multiprocessing_context={a.contexts}"]
    log = out / f"{name}.log"
    t0 = time.perf_counter()
    print(f"{name}: loader_only and train over {' '.join(grid)} ...", flush=True)
    sweep = ["-m", *grid, "bench.mode=loader_only,train", f"hydra.sweep.dir={out / name}-grid"]
    _run([*sweep, *common], log)
    print(f"{name}: model_only ...", flush=True)
    single = ["-m", "bench.mode=model_only", f"hydra.sweep.dir={out / name}-model"]
    _run([*single, *common], log)
    print(f"{name}: measured in {time.perf_counter() - t0:.0f} s (log: {log})", flush=True)


def analyse(name: str, out: Path) -> list:
    from loaderbench import store
    from loaderbench.report import load_sweep
    from loaderbench.report.analysis import group_repeats, varied_params
    from loaderbench.report.predict import predict

    client = store.open_store(f"sqlite:///{out / 'mlflow.db'}", must_exist=True)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        print(f"{name}: nothing recorded in {out}")
        return []
    query = "tags.`loaderbench.role` = 'sweep'"
    parents = client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time"])
    rows = [row for p in parents for row in load_sweep(client, p.info.run_id)[1]]
    preds = predict(group_repeats(rows, varied_params(rows)))
    print(f"\n{name}: training samples/s predicted from loader_only + model_only, and measured")
    if preds:
        c = preds[0].costs
        print(
            f"  inputs: c_load {c.c_load * 1e3:.3f} ms/sample (loader_only, 0 workers), "
            f"c_step {c.c_step * 1e3:.3f} ms/sample (model_only, {c.step_cores:.2f} cores busy), "
            f"{c.cores} cores, {c.threads} torch threads"
        )
    print(f"  {'setting':58} {'loader':>7} {'predicted':>9} {'measured':>9} {'error':>7}  limit")
    for p in preds:
        measured = f"{p.measured:9.0f}" if p.measured is not None else f"{'–':>9}"
        error = f"{p.error:+7.1%}" if p.error is not None else f"{'–':>7}"
        loader = 1 / p.costs.loader_s
        print(
            f"  {p.setting[:58]:58} {loader:7.0f} {p.predicted:9.0f} {measured} {error}  {p.limit}"
        )
    return preds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small data, 0 and 2 workers, fork")
    p.add_argument("--workers", default=None, help="num_workers values (0,1,2; quick: 0,2)")
    p.add_argument("--contexts", default=None, help="start methods (fork,spawn; quick: fork)")
    p.add_argument("--epochs", type=int, default=None, help="per run (2; quick: 1)")
    p.add_argument("--only", nargs="+", choices=sorted(WORKLOADS), default=sorted(WORKLOADS))
    p.add_argument("--out", type=Path, default=None, help="(outputs/bench_predict/<time>)")
    p.add_argument("--analyse", type=Path, default=None, help="re-read a finished --out")
    a = p.parse_args(argv)
    a.workers = a.workers or ("0,2" if a.quick else "0,1,2")
    a.contexts = a.contexts or ("fork" if a.quick else "fork,spawn")
    a.epochs = a.epochs or (1 if a.quick else 2)
    out = a.analyse or a.out or ROOT / "outputs" / "bench_predict" / time.strftime("%Y%m%d-%H%M%S")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if a.analyse is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{os.cpu_count()} cpus, load average {load:.1f}; results in {out}", flush=True)
        for name in a.only:
            measure(name, out, a)
    errors = [
        (abs(pr.error), name, pr.setting)
        for name in a.only
        for pr in analyse(name, out)
        if pr.error is not None
    ]
    if errors:
        worst = max(errors)
        print(f"\nlargest relative error: {worst[0]:.1%} ({worst[1]}: {worst[2]})")
        within = sum(e <= 0.15 for e, _, _ in errors)
        print(f"within 15%: {within} of {len(errors)} settings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
