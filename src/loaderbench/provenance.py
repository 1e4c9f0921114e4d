"""What a run needs to be redone: versions, machine, code revision (the ``env.*`` tags)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import torch

from loaderbench import __version__, keys
from loaderbench.devices import cpu_model, device_name
from loaderbench.tracking_uri import redact

PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "mlflow": "mlflow",
    "numpy": "numpy",
    "pillow": "pillow",
}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@cache
def git_revision() -> str:
    """The commit of loaderbench's own checkout, ``-dirty`` when it has local changes; "unknown"
    for an installed package, which may sit inside the user's own repository (a .venv in their
    project): that repository's commit says nothing about this code."""
    here = Path(__file__).resolve().parent
    try:
        subprocess.run(
            ["git", "-C", str(here), "ls-files", "--error-unmatch", Path(__file__).name],
            capture_output=True,
            check=True,
            timeout=10,
        )
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def cpu_cores() -> int:
    """CPUs this process may run on (a Slurm allocation or a container's cpuset, not the host)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def env_tags(device: torch.device) -> dict[str, str]:
    tags = {f"env.{name}": _version(dist) for name, dist in PACKAGES.items()}
    tags |= {
        keys.VERSION_TAG: __version__,  # the code that ran, not the metadata of some install
        "env.python": platform.python_version(),
        "env.platform": platform.platform(),
        "env.cpu_count": str(os.cpu_count()),
        "env.cpu_affinity": str(cpu_cores()) if hasattr(os, "sched_getaffinity") else "n/a",
        "env.cpu_model": cpu_model(),
        "env.torch_threads": str(torch.get_num_threads()),
        "env.torch_cuda": str(torch.version.cuda or "none"),
        "env.git_sha": git_revision(),
        "env.hostname": socket.gethostname(),
        "env.device": str(device),
        "env.device_name": device_name(device),
        "env.argv": redact(" ".join(sys.argv)),  # a URI's credentials never recorded
    }
    return tags


def scheduler_job_id() -> str | None:
    """The Slurm job running this process (``ARRAYID_TASK`` in an array, as squeue and scancel
    write it), or submitit_local's job (the pid its stop signals go to); None elsewhere."""
    env = os.environ
    if array := env.get("SLURM_ARRAY_JOB_ID"):
        return f"{array}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID")
