"""Does a long sweep hold? Many tiny jobs against a real ``mlflow server``, in one process.

    python scripts/long_sweep.py                # a 10-job sweep, then a 100-job one: ~10 min
    python scripts/long_sweep.py --jobs 20      # a quick check (5 jobs, then 20)

Starts an ``mlflow server`` on 127.0.0.1 (a SQLite backend, artifacts served over HTTP) in a
temporary folder and runs ``python run.py -m +bench.repeat=range(0,N)`` against it: tiny
loader_only jobs of one epoch, with Hydra's basic launcher, so every job runs in the launching
process, which is sampled every 0.2 s from outside (RSS and open file descriptors, from /proc).
A sweep of N/10 jobs runs first, so the report's time can be compared per child. Then it reads
the runs back and prints:

- the status of every run (all FINISHED, the parent too);
- the launching process's RSS and open fds at the end of the first job and of the last;
- the per-job overhead, median of the first ten jobs and of the last ten: the time from one
  job's end to the next one's, less that job's set-up, epochs and evaluation (Hydra's job
  set-up, opening the run, logging, the sampler's start and stop);
- the time the sweep's end took (its last job's end to the parent's), and to build the report
  and the saved view again from the store (warm, the least of three), for both sweeps, and what each further child costs
  (the difference over the difference in children): a fixed part (the plots) plus a flat cost
  per child is linear in the number of children.

Always exits 0 unless a run did not finish: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "bench.mode=loader_only",
    "dataset.size=64",
    "dataset.val_size=16",
    "dataset.image_size=16",
    "loader.batch_size=32",
    "loader.num_workers=0",
    "trainer.epochs=1",
    "trainer.progress=false",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/server.db",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    with open(folder / "server.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("mlflow server exited at start") from None
            time.sleep(0.5)
    raise RuntimeError("mlflow server did not answer within 120 s")


def sample(pid: int) -> tuple[float, float, int] | None:
    """(time, RSS in MB, open fds) of process ``pid``, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    rss = [int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:")]
    return (time.time(), rss[0] / 1024, fds) if rss else None  # a zombie has no RSS


def run_sweep(url: str, jobs: int, folder: Path) -> list[tuple[float, float, int]]:
    """Run the sweep; return the launching process's samples over it."""
    cmd = [
        sys.executable, str(ROOT / "run.py"), "-m", f"+bench.repeat=range(0,{jobs})", *TINY,
        f"mlflow.tracking_uri={url}", f"hydra.sweep.dir={folder}",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LOADERBENCH_"))}
    folder.mkdir(parents=True)
    with open(folder.with_suffix(".log"), "wb") as log:
        proc = subprocess.Popen(cmd, cwd=folder.parent, env=env, stdout=log, stderr=log)
    samples = []
    while proc.poll() is None:
        if (s := sample(proc.pid)) is not None:
            samples.append(s)
        time.sleep(0.2)
    if proc.returncode != 0:
        print(f"the sweep exited {proc.returncode}; see {folder.with_suffix('.log')}")
    return samples


def at(samples: list[tuple[float, float, int]], t: float) -> tuple[float, float, int]:
    """The last sample taken at or before ``t`` (the first one if none was)."""
    before = [s for s in samples if s[0] <= t]
    return before[-1] if before else samples[0]


def read_back(url: str, folder: Path, samples) -> dict:
    from loaderbench import keys, store, ui
    from loaderbench.parent_run import VIEW_COLUMNS
    from loaderbench.report import write_report

    client = store.open_store(url)
    exp = client.get_experiment_by_name("loaderbench").experiment_id
    query = f"tags.`{keys.SWEEP_DIR_TAG}` = '{folder.resolve()}'"
    (parent,) = [r for r in client.search_runs([exp], query) if store.is_sweep(r)]
    children = store.child_runs(client, parent)
    overhead = []
    for prev, run in zip(children, children[1:], strict=False):
        work = run.data.metrics.get(keys.SETUP_S, 0.0)
        for key in (keys.EPOCH_S, keys.EVAL_S):
            work += sum(m.value for m in client.get_metric_history(run.info.run_id, key))
        overhead.append((run.info.end_time - prev.info.end_time) / 1000 - work)

    def after(k: int) -> list:  # RSS and open fds once job k has ended
        s = at(samples, children[k - 1].info.end_time / 1000)
        return [round(s[1], 1), s[2]]

    marks = sorted({1, *(len(children) * q // 4 for q in (1, 2, 3, 4))} - {0})
    first = at(samples, children[0].info.end_time / 1000)
    last = at(samples, children[-1].info.end_time / 1000)
    out = folder.parent / f"report-{len(children)}"
    view = (client, exp, parent.info.run_id, [keys.WORKERS_PARAM], VIEW_COLUMNS)
    write_report(parent.info.run_id, client, out)  # warm: the first one imports matplotlib
    report_s, view_s = [], []
    for _ in range(3):  # the least of three: the machine is shared
        t0 = time.perf_counter()
        write_report(parent.info.run_id, client, out)
        t1 = time.perf_counter()
        ui.save_sweep_view(*view)
        report_s.append(t1 - t0)
        view_s.append(time.perf_counter() - t1)
    return {
        "jobs": len(children),
        "statuses": sorted({r.info.status for r in [parent, *children]}),
        "finished": sum(r.info.status == "FINISHED" for r in children),
        "rss_mb_first_last": [round(first[1], 1), round(last[1], 1)],
        "fds_first_last": [first[2], last[2]],
        "rss_mb_max": round(max(s[1] for s in samples), 1),
        "rss_mb_fds_at_job": {k: after(k) for k in marks},  # does it level off?
        "overhead_s_first10_last10": [
            round(statistics.median(overhead[:10]), 3),
            round(statistics.median(overhead[-10:]), 3),
        ],
        "sweep_end_s": round((parent.info.end_time - children[-1].info.end_time) / 1000, 2),
        "report_s": round(min(report_s), 3),
        "view_s": round(min(view_s), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=100, help="jobs of the long sweep (at least 20)")
    p.add_argument("--out", type=Path, help="also write the figures here, as JSON")
    a = p.parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cpus, load average {load} at the start", flush=True)
    figures = []
    with tempfile.TemporaryDirectory(prefix="lb-long-sweep-") as tmp:
        server, url = start_server(Path(tmp))
        try:
            for jobs in (max(5, a.jobs // 10), a.jobs):
                folder = Path(tmp) / f"sweep-{jobs}"
                samples = run_sweep(url, jobs, folder)
                figures.append(read_back(url, folder, samples))
                print(json.dumps(figures[-1]), flush=True)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    small, big = figures
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average {load} at the end")
    print(f"{big['finished']} of {big['jobs']} jobs FINISHED; statuses {big['statuses']}")
    print("launching process: RSS {} -> {} MB (max {}), open fds {} -> {}".format(
        *big["rss_mb_first_last"], big["rss_mb_max"], *big["fds_first_last"]))  # fmt: skip
    marks = [f"{k}: {rss} MB {fds} fds" for k, (rss, fds) in big["rss_mb_fds_at_job"].items()]
    print(f"  after job k: {', '.join(marks)}")
    print("per-job overhead: first ten {} s, last ten {} s (medians)".format(
        *big["overhead_s_first10_last10"]))  # fmt: skip
    for f in (small, big):
        print(
            f"{f['jobs']} children: report {f['report_s']} s, saved view {f['view_s']} s; "
            f"the sweep's end (report, view, publishing) took {f['sweep_end_s']} s"
        )
    extra = big["jobs"] - small["jobs"]  # the cost of each further child: flat if linear
    print(
        f"each further child: report {1000 * (big['report_s'] - small['report_s']) / extra:.1f} "
        f"ms, view {1000 * (big['view_s'] - small['view_s']) / extra:.2f} ms"
    )
    if a.out:
        a.out.write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if big["statuses"] == ["FINISHED"] and small["statuses"] == ["FINISHED"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
