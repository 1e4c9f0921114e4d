"""The ``device`` group: cpu, cuda, mps or auto. Asking for an accelerator that is not there is
an error, never a silent fallback to the CPU (that would measure the wrong machine)."""

from __future__ import annotations

import os
import platform
import sys

import torch

from loaderbench.config import ConfigError

CHOICES = ("cpu", "cuda", "mps", "auto")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(kind: str) -> torch.device:
    """The torch.device for ``device.type``; ``auto`` picks cuda, then mps, then cpu."""
    if kind not in CHOICES:
        raise ConfigError(
            f"device.type={kind}: choose one of {', '.join(CHOICES)} (e.g. device=cpu)"
        )
    if kind == "auto":
        return torch.device(
            "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device=cuda: torch sees no CUDA device here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
            "use device=cpu or device=auto"
        )
    if kind == "mps" and not _mps_available():
        raise ConfigError(
            "device=mps: Apple's MPS backend is not available here; use device=cpu or device=auto"
        )
    return torch.device(kind)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return cpu_model()


def device_label(device: torch.device) -> str:
    """``cpu (Intel Xeon ..., 2 cores)`` or ``cuda:0 (NVIDIA A100 ...)``: for the summary line."""
    if device.type == "cpu":
        return f"cpu ({cpu_model()}, {os.cpu_count()} cores)"
    return f"{device} ({device_name(device)})"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Bit-identical results for a seed (``trainer.deterministic``), cheaply.

    ``torch.use_deterministic_algorithms`` also sets ``torch._inductor.config.deterministic``,
    and importing that config imports dynamo: ~0.9 s of every job's start-up. Nothing here
    compiles, so the flag is set directly, and inductor's too where it is already loaded.
    """
    if deterministic and device.type == "cuda":
        # cuBLAS needs a fixed workspace for reproducible matmuls; it must be set before use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch._C._set_deterministic_algorithms(deterministic, warn_only=False)
    # With deterministic algorithms torch also fills every torch.empty() with NaN, a guard
    # against reading uninitialised memory that costs a memset per allocation (~3% of a small
    # CNN's CPU step here) and changes no result: every output is written before it is read.
    torch.utils.deterministic.fill_uninitialized_memory = False
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


_DEFAULT_THREADS: list[int] = []  # torch's own count, read before the first job changes it


def set_torch_threads(threads: int | None) -> int:
    """``torch.set_num_threads`` for the step (``trainer.torch_threads``; None: torch's default,
    restored, since an in-process sweep's earlier job may have changed it). Returns the count
    the step runs with. DataLoader workers set their own to 1 whatever this says."""
    if not _DEFAULT_THREADS:
        _DEFAULT_THREADS.append(torch.get_num_threads())
    torch.set_num_threads(threads or _DEFAULT_THREADS[0])
    return torch.get_num_threads()
