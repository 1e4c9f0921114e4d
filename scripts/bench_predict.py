"""How well do the ceilings predict training, and an emulated step? Measured on grids.

    python scripts/bench_predict.py                 # 3 workloads, 3 rounds: ~45 min on 2 cores
    python scripts/bench_predict.py --only emulated --rounds 3     # the emulated step alone
    python scripts/bench_predict.py --quick         # a check that it all runs, ~3 min a workload
    python scripts/bench_predict.py --analyse outputs/bench_predict/<time>   # re-read, no runs

For each workload and each of ``--rounds`` rounds (``+bench.repeat=R``) it runs, as a user
would (``python run.py``, MLflow on a SQLite store):
1. one sweep over the grid (``loader.num_workers`` x ``loader.multiprocessing_context``) in
   ``bench.mode=loader_only`` and ``train``, the two modes of a setting back to back;
2. one ``bench.mode=model_only`` run.
Then ``loaderbench.report.predict`` predicts each setting's training throughput from the
loader_only runs and the model_only run alone, and this prints predicted against measured per
setting (the median error over the rounds, with its min–max) and the largest relative error;
``report-<workload>-r<round>.md`` in ``--out`` is the sweep report over a round's sweeps together.
Workloads:

- ``jpeg``: decode-bound: the shapes as JPEG files (scripts/make_imagefolder.py), the augment
  transforms, small_cnn;
- ``tensor``: compute-bound: in-memory float tensors (transforms=none), resnet18;
- ``emulated``: the default workload (shapes, basic transforms) feeding an emulated step
  (``bench.mode=emulated``) of ``--steps`` ms (5, 20, 50) x both ``bench.step_sync`` values x
  num_workers 0, 1, 2, 4, predicted from a loader_only run per worker count and T alone (the
  step uses no core: a direct test of the overlap rule); the wait per step is predicted too.

Everything stays in ``--out`` (the store, the sweeps, the JPEGs). Timing figures need an idle
machine: run nothing else meanwhile. Always exits 0: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
WORKLOADS["emulated"] = []  # the default workload
SIZES = {  # workload -> (full, quick): training samples, validation samples
    "jpeg": ((2048, 256), (512, 64)),
    "tensor": ((1024, 128), (256, 64)),
    "emulated": ((2048, 256), (256, 64)),
}


def _run(args: list[str], log: Path) -> None:
    cmd = [sys.executable, str(ROOT / "run.py"), *args]
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        print(f"  (exit {proc.returncode}; see {log})", flush=True)


def measure(name: str, out: Path, a: argparse.Namespace, rnd: int) -> None:
    (train, val) = SIZES[name][1 if a.quick else 0]
    common = [*WORKLOADS[name], f"trainer.epochs={a.epochs}", "trainer.progress=false"]
    common += [f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}", f"mlflow.experiment={name}"]
    common.append(f"+bench.repeat={rnd}")
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
    log = out / f"{name}.log"
    t0 = time.perf_counter()
    where = f"hydra.sweep.dir={out / name}-r{rnd}"
    if name == "emulated":
        workers = [f"loader.num_workers={a.emulated_workers}"]
        print(f"{name} r{rnd}: loader_only over {workers[0]} ...", flush=True)
        _run(["-m", *workers, "bench.mode=loader_only", f"{where}-loader", *common], log)
        grid = [*workers, f"bench.step_ms={a.steps}", "bench.step_sync=step,none"]
        print(f"{name} r{rnd}: emulated over {' '.join(grid)} ...", flush=True)
        _run(["-m", *grid, "bench.mode=emulated", f"{where}-grid", *common], log)
    else:
        grid = [f"loader.num_workers={a.workers}", f"loader.multiprocessing_context={a.contexts}"]
        print(f"{name} r{rnd}: loader_only and train over {' '.join(grid)} ...", flush=True)
        _run(["-m", *grid, "bench.mode=loader_only,train", f"{where}-grid", *common], log)
        print(f"{name} r{rnd}: model_only ...", flush=True)
        _run(["-m", "bench.mode=model_only", f"{where}-model", *common], log)
    print(f"{name} r{rnd}: measured in {time.perf_counter() - t0:.0f} s (log: {log})", flush=True)


def _rounds(name: str, out: Path) -> dict[str, list]:
    """The rows of every sweep of ``name``, by round (``bench.repeat``)."""
    from loaderbench import store
    from loaderbench.report import load_sweep

    client = store.open_store(f"sqlite:///{out / 'mlflow.db'}", must_exist=True)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return {}
    query = "tags.`loaderbench.role` = 'sweep'"
    parents = client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time"])
    by: dict[str, list] = {}
    for row in (r for p in parents for r in load_sweep(client, p.info.run_id)[1]):
        by.setdefault(row.params.get("bench.repeat", "0"), []).append(row)
    return by


def _spread(errors: list[float]) -> str:
    if len(errors) < 2:
        return f"{errors[0]:+7.1%}"
    return f"{statistics.median(errors):+7.1%} ({min(errors):+.1%}..{max(errors):+.1%})"


def analyse(name: str, out: Path) -> list[tuple[str, list[float]]]:
    """Print predicted against measured per setting (medians over the rounds, the error's
    min..max); return (setting, errors) per setting."""
    from loaderbench.report.analysis import analyze, group_repeats, varied_params
    from loaderbench.report.predict import predict, predict_emulated
    from loaderbench.report.render import markdown

    rounds = _rounds(name, out)
    if not rounds:
        print(f"{name}: nothing recorded in {out}")
        return []
    by: dict[str, list] = {}
    for rnd, rows in rounds.items():
        groups = group_repeats(rows, [k for k in varied_params(rows) if k != "bench.repeat"])
        preds = predict_emulated(groups) if name == "emulated" else predict(groups)
        for p in preds:
            by.setdefault(p.setting, []).append(p)
        # the report over the round's sweeps together: its prediction table has both sides
        report = out / f"report-{name}-r{rnd}.md"
        report.write_text(markdown(analyze(f"{name}, round {rnd}", rows)) + "\n", encoding="utf-8")
    print(f"\n{name}: {len(rounds)} round(s); samples/s predicted and measured (medians)")
    if name == "emulated":
        return _print_emulated(by)
    first = next(iter(by.values()))[0].costs
    print(
        f"  inputs: c_load {first.c_load * 1e3:.3f} ms/sample (loader_only, 0 workers), "
        f"c_step {first.c_step * 1e3:.3f} ms/sample (model_only, {first.step_cores:.2f} cores "
        f"busy), {first.cores} cores, {first.threads} torch threads"
    )
    print(f"  {'setting':58} {'loader':>7} {'predicted':>9} {'measured':>9} {'error':>7}  limit")
    out_rows = []
    for setting, ps in by.items():
        med = statistics.median
        errors = [p.error for p in ps if p.error is not None]
        measured = [p.measured for p in ps if p.measured is not None]
        loader = med(1 / p.costs.loader_s for p in ps)
        shown = f"{med(measured):9.0f}" if measured else f"{'–':>9}"
        error = _spread(errors) if errors else f"{'–':>7}"
        flag = " (uncertain)" if ps[0].uncertain else ""
        print(
            f"  {setting[:58]:58} {loader:7.0f} {med(p.predicted for p in ps):9.0f} {shown} "
            f"{error}  {ps[0].limit}{flag}"
        )
        if errors:
            out_rows.append((setting, errors))
    return out_rows


def _print_emulated(by: dict[str, list]) -> list[tuple[str, list[float]]]:
    med = statistics.median
    print(
        f"  {'workers':>7} {'T ms':>5} {'sync':>4} {'L ms':>6} {'predicted':>9} {'measured':>8} "
        f"{'error (min..max)':>26} {'wait ms: predicted':>19} {'measured':>8}"
    )
    rows = []
    for setting, ps in sorted(by.items(), key=lambda kv: _order(kv[1][0])):
        p0, errors = ps[0], [p.error for p in ps]
        workers = setting.split("loader.num_workers=")[1].split(",")[0]
        print(
            f"  {workers:>7} {p0.step_ms:5.3g} {p0.sync:>4} {med(p.loader_ms for p in ps):6.3g} "
            f"{med(p.predicted for p in ps):9.0f} {med(p.measured for p in ps):8.0f} "
            f"{_spread(errors):>26} {med(p.wait_ms for p in ps):19.3g} "
            f"{med(p.measured_wait_ms for p in ps):8.3g}"
        )
        rows.append((setting, errors))
    return rows


def _order(p) -> tuple:
    workers = int(p.setting.split("loader.num_workers=")[1].split(",")[0])
    return (p.step_ms, p.sync != "step", workers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small data, 0 and 2 workers, fork")
    p.add_argument("--workers", default=None, help="num_workers values (0,1,2; quick: 0,2)")
    p.add_argument("--contexts", default=None, help="start methods (fork,spawn; quick: fork)")
    p.add_argument("--epochs", type=int, default=None, help="per run (2; quick: 1)")
    p.add_argument("--rounds", type=int, default=None, help="repeats of each grid (3; quick: 1)")
    p.add_argument("--steps", default="5,20,50", help="emulated: step times in ms (5,20,50)")
    p.add_argument(
        "--emulated-workers", default=None, help="emulated: num_workers (0,1,2,4; quick: 0,2)"
    )
    p.add_argument("--only", nargs="+", choices=sorted(WORKLOADS), default=sorted(WORKLOADS))
    p.add_argument("--out", type=Path, default=None, help="(outputs/bench_predict/<time>)")
    p.add_argument("--analyse", type=Path, default=None, help="re-read a finished --out")
    a = p.parse_args(argv)
    a.workers = a.workers or ("0,2" if a.quick else "0,1,2")
    a.contexts = a.contexts or ("fork" if a.quick else "fork,spawn")
    a.epochs = a.epochs or (1 if a.quick else 2)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.emulated_workers = a.emulated_workers or ("0,2" if a.quick else "0,1,2,4")
    out = a.analyse or a.out or ROOT / "outputs" / "bench_predict" / time.strftime("%Y%m%d-%H%M%S")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if a.analyse is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{os.cpu_count()} cpus, load average {load:.1f}; results in {out}", flush=True)
        for name in a.only:
            for rnd in range(a.rounds):
                measure(name, out, a, rnd)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"load average at the end {load:.1f}", flush=True)
    errors = [
        (abs(statistics.median(errs)), name, setting)
        for name in a.only
        for setting, errs in analyse(name, out)
    ]
    if errors:
        worst = max(errors)
        print(
            f"\nlargest relative error: {worst[0]:.1%} ({worst[1]}: {worst[2]}; median of rounds)"
        )
        for limit in (0.10, 0.15):
            within = sum(e <= limit for e, _, _ in errors)
            print(f"within {limit:.0%}: {within} of {len(errors)} settings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
