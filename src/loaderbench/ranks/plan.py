"""What a job's ranks will be, checked before anything starts: how many, the process-group
backend, each rank's torch threads and device, and whether the cores cover them.

:func:`plan_ranks` runs in :func:`loaderbench.job.build`, in the launching process and in each
rank alike, so bad input (more ranks than CUDA devices, a Slurm job with fewer cores than ranks)
is one line before any rank starts, and the run records what the ranks use (``effective.ranks``,
``effective.dist_backend``, ``effective.torch_threads``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from loaderbench.config import ConfigError
from loaderbench.cores import oversubscribed, rank_threads
from loaderbench.provenance import cpu_cores

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}  # the process-group backend of each device type


@dataclass
class RankPlan:
    """The ranks of one job (``ranks == 1``: this process alone, no process group)."""

    ranks: int
    backend: str | None  # gloo or nccl; None with one rank
    threads: int | None  # each rank's torch intra-op threads; None with one rank (torch's own)
    cores: int  # the cores this process may use (os.sched_getaffinity)
    warning: str | None = None  # the one line when ranks × (workers + 1) exceeds the cores

    def effective(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ranks": self.ranks, "dist_backend": self.backend}
        if self.ranks > 1:
            out["torch_threads"] = self.threads
        return out


def _fail(value: int, why: str, fix: str) -> ConfigError:
    return ConfigError(f"trainer.ranks={value}: {why}; {fix}")


def plan_ranks(cfg: Any, device: torch.device, workers: int) -> RankPlan:
    """The ranks of ``cfg`` on ``device`` with ``workers`` loader workers per rank, checked."""
    ranks, cores = int(cfg.trainer.get("ranks", 1)), cpu_cores()
    if ranks == 1:
        return RankPlan(1, None, None, cores)
    if device.type not in BACKENDS:
        raise _fail(ranks, f"device={device.type} has one device and no DDP backend here",
                    "use device=cpu (gloo) or device=cuda (nccl), or trainer.ranks=1")  # fmt: skip
    if device.type == "cuda" and ranks > (n := torch.cuda.device_count()):
        raise _fail(ranks, f"one rank per CUDA device, and torch sees {n} here",
                    f"trainer.ranks={n} at most, or device=cpu")  # fmt: skip
    if os.environ.get("SLURM_JOB_ID") and ranks > cores:
        raise _fail(ranks, f"this Slurm job may use {cores} cores, fewer than its ranks",
                    f"set hydra.launcher.cpus_per_task={ranks} or more (each rank's workers "
                    "want cores of their own too)")  # fmt: skip
    threads = rank_threads(cfg.trainer.get("torch_threads"), ranks, cores)
    backend = cfg.loader.get("backend")
    warning = oversubscribed(ranks, workers, cores, backend)
    return RankPlan(ranks, BACKENDS[device.type], threads, cores, warning)
