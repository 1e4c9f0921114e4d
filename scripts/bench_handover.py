"""How long the loop waits for a batch that is already waiting in the loader's queue.

    python scripts/bench_handover.py                  # the default workload, w0 w1 w2 w4
    python scripts/bench_handover.py --workers 2 --pauses 50

The hand-over (a worker's batch rebuilt from shared memory in the main process, then the copy to
the device) is part of every batch. When workers load while the step runs, it is the part of the
wait no step hides if the loop waits for each step (``bench.step_sync=step``): the emulated
step's prediction, ``max(L, T)`` a batch, leaves it out. This pauses before each ``next()``
(a sleep, which leaves the cores idle as an emulated step on a CPU does, and a spin, which keeps
the main process busy), longer than a batch takes to load, so the batch is ready, then times
``next()`` and the copy. The job's own loader (``prepare``), on the default workload at the
sizes ``scripts/bench_predict.py`` runs. Prints one line per setting. Timing figures need an
idle machine. Always exits 0: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main(argv: list[str] | None = None) -> int:
    from loaderbench.config import register_configs
    from loaderbench.data.loader import close_loader
    from loaderbench.experiment import prepare
    from loaderbench.loop import _to_device

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="0,1,2,4", help="num_workers values (0,1,2,4)")
    p.add_argument("--pauses", default="50,250", help="pauses before each next(), in ms")
    p.add_argument("--batches", type=int, default=16, help="timed per setting and pause (16)")
    a = p.parse_args(argv)
    register_configs()
    for workers in map(int, a.workers.split(",")):
        overrides = ["dataset.size=2048", "dataset.val_size=256", "mlflow.enabled=false"]
        overrides += ["trainer.progress=false", f"loader.num_workers={workers}"]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            setup = prepare(compose(config_name="config", overrides=overrides))
        try:
            for pause_ms in map(float, a.pauses.split(",")):
                for name, pause in (("sleep", time.sleep), ("spin", _spin)):
                    batches, waits = iter(setup.train_loader), []
                    for _ in range(4):  # the workers' start and first prefetch
                        next(batches)
                    for _ in range(a.batches):
                        pause(pause_ms / 1e3)
                        start = time.perf_counter()
                        _to_device(next(batches), setup.device, channels_last=False)
                        waits.append((time.perf_counter() - start) * 1e3)
                    del batches
                    print(
                        f"w{workers} after a {pause_ms:g} ms {name}: next() + copy, median "
                        f"{statistics.median(waits):.2f} ms (min {min(waits):.2f}, max "
                        f"{max(waits):.2f}, {a.batches} batches)",
                        flush=True,
                    )
        finally:
            close_loader(setup.train_loader)
            close_loader(setup.val_loader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
