"""What one forked worker costs the process that forks it: fork, the child's exit, the wait.

    python scripts/fork_cost.py                   # torch and torchvision imported, as a bare loop
    python scripts/fork_cost.py --hold-tracking   # and MLflow and an open store, as a job holds

A DataLoader without persistent workers forks its workers at the start of every epoch and
reaps them at its end, inside the epoch's clock. Forking copies the page tables of the process's
anonymous memory, so it costs more the more the process holds. Prints one JSON line: the median
milliseconds of ``--forks`` bare ``os.fork()`` + ``os._exit`` + ``waitpid``, and of as many
``multiprocessing`` fork-context ``Process`` start + join (what the DataLoader does), with the
process's ``RssAnon`` and ``VmPTE`` (kB). A diagnostic, not a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time

import torch  # noqa: F401  (what every loop's process holds)
import torchvision  # noqa: F401
from bare_loop import hold_tracking  # scripts/, beside this file

from loaderbench.resources import _read_kb  # /proc's kB lines, as the resource monitor reads them


def nothing() -> None:
    pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--forks", type=int, default=40)
    p.add_argument("--hold-tracking", action="store_true", help="first open MLflow as a job does")
    a = p.parse_args(argv)
    tracking = hold_tracking() if a.hold_tracking else None
    context = multiprocessing.get_context("fork")
    bare, process = [], []
    for _ in range(a.forks):
        t0 = time.perf_counter()
        if (pid := os.fork()) == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        bare.append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        worker = context.Process(target=nothing)
        worker.start()
        worker.join()
        process.append(1e3 * (time.perf_counter() - t0))
    out = {"hold_tracking": a.hold_tracking, "fork_exit_ms": statistics.median(bare)}
    memory = _read_kb("/proc/self/status", (b"RssAnon", b"VmPTE")) or {}
    out |= {"process_ms": statistics.median(process)} | {k.decode(): v for k, v in memory.items()}
    print(json.dumps(out), flush=True)
    del tracking


if __name__ == "__main__":
    main()
