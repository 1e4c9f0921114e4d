"""What goes wrong between the DataLoader's workers and the training loop, said with its fix.

Worker batches travel to the main process through shared memory (``/dev/shm``) with either of
torch's sharing strategies: ``file_descriptor`` (the default) and ``file_system`` both allocate
there. A small /dev/shm (Docker's default is 64 MB) fails mid-epoch with "No space left on
device" or kills a worker with SIGBUS; ``file_system`` is the fix for "too many open files", not
for a small /dev/shm. The estimate below runs before the loader starts, and
:func:`explain_loader_error` turns torch's raw messages into the cause and the fixes.
"""

from __future__ import annotations

import shutil
from typing import Any

import torch

from loaderbench.devices import configure_determinism

SHM = "/dev/shm"
MB = 1024 * 1024
HELD_BY_MAIN = 2  # batches in /dev/shm on the main process's side, besides those prefetched


class LoaderFailure(RuntimeError):
    """The loader failed for a reason with a known fix; the message says both."""


def sample_bytes(sample: Any) -> int:
    """Bytes of the tensors in one sample (tuple, list, dict or tensor)."""
    if isinstance(sample, torch.Tensor):
        return sample.element_size() * sample.nelement()
    if isinstance(sample, dict):
        return sum(sample_bytes(v) for v in sample.values())
    if isinstance(sample, (list, tuple)):
        return sum(sample_bytes(v) for v in sample)
    return 8  # a Python number becomes one int64/float64 in the batch


def _shm_usage() -> tuple[int, int] | None:
    """(free, total) bytes of /dev/shm, or None where there is none."""
    try:
        usage = shutil.disk_usage(SHM)
    except OSError:
        return None
    return usage.free, usage.total


def shm_free_bytes() -> int | None:
    usage = _shm_usage()
    return usage[0] if usage else None


def _prefetch(plan: Any) -> int:
    """Batches each worker keeps in flight (torch's default 2 when unset)."""
    return plan.effective.get("prefetch_factor") or 2


def check_shared_memory(plan: Any, batch_bytes: int) -> str | None:
    """A warning when the batches in flight (batch x prefetch_factor x num_workers) cannot fit
    in the free /dev/shm; None when they fit or there are no workers."""
    if plan.num_workers == 0 or batch_bytes <= 0:
        return None
    free = shm_free_bytes()
    prefetch = _prefetch(plan)
    need = batch_bytes * prefetch * plan.num_workers
    if free is None or need <= free:
        return None
    return (
        f"shared memory: {plan.num_workers} workers x prefetch_factor {prefetch} x "
        f"{batch_bytes / MB:.1f} MB per batch = {need / MB:.0f} MB in flight, but {SHM} has "
        f"{free / MB:.0f} MB free. {_shm_fixes(plan, batch_bytes, free)}"
    )


def _shm_fixes(plan: Any, batch_bytes: int, free: int | None) -> str:
    """The fixes, with the worker count and the batch size that would fit in ``free``."""
    prefetch = _prefetch(plan)
    # Besides the workers' prefetched batches, the main process holds ~2 (the one in use and
    # one being released): measured with a 16 MB /dev/shm and 224² batches: 3 images ran, 5 did not.
    per_batch = max(int((free or 0) // max(batch_bytes, 1)), 0) - HELD_BY_MAIN
    workers = per_batch // prefetch
    fewer = f"loader.num_workers={workers} (fits)" if workers >= 1 else "fewer workers"
    per_sample = batch_bytes / max(plan.batch_size, 1)
    in_flight = prefetch * max(plan.num_workers, 1) + HELD_BY_MAIN
    batch = int((free or 0) * 0.8 // (per_sample * in_flight))
    smaller = f"loader.batch_size={batch} (fits)" if batch >= 1 else "a smaller loader.batch_size"
    return (
        "Fixes: a bigger /dev/shm (Docker: --shm-size=2g or --ipc=host), "
        f"{fewer}, loader.prefetch_factor=1, {smaller}, or "
        "loader.num_workers=0 (no shared memory at all)."
    )


def explain_loader_error(
    exc: BaseException, plan: Any, batch_bytes: int, where: str = "in this epoch"
) -> str | None:
    """The cause and the fix for a DataLoader failure torch reports in raw words, or None.
    ``where``: which batch it was, in words."""
    text = str(exc)
    if (
        "No space left on device" in text
        or "unable to allocate shared memory" in text
        or ("Bus error" in text and "shared memory" in text)
    ):
        free, total = _shm_usage() or (None, None)
        size = f"{total / MB:.0f} MB ({(free or 0) / MB:.0f} MB free now)" if total else "?"
        return (
            f"out of shared memory: workers pass batches through {SHM}, which holds {size}; "
            f"one batch needs {batch_bytes / MB:.1f} MB, x prefetch_factor "
            f"{_prefetch(plan)} x {plan.num_workers} workers. "
            + _shm_fixes(plan, batch_bytes, free)
            + " (loader.sharing_strategy=file_system is the fix for 'too many open files', "
            "not for this.)"
        )
    if "Too many open files" in text or "received 0 items of ancdata" in text:
        return (
            "too many open files: each shared batch holds a file descriptor. Fixes: "
            "loader.sharing_strategy=file_system, or raise the limit (ulimit -n 65536)."
        )
    if "DataLoader timed out" in text:
        return (
            f"a batch ({where}) took longer than loader.timeout={plan.timeout} s to arrive: "
            "storage or a worker stalled. Raise loader.timeout (0 waits forever), or look at "
            "the storage (dataset.read_latency_ms emulates slow storage on purpose)."
        )
    if "killed by signal" in text or "exited unexpectedly" in text:
        return (
            f"a DataLoader worker died ({text.strip().splitlines()[0]}). Killed usually means "
            "out of memory: check the kernel log (dmesg | grep -i oom) and memory/peak_pss_mb; "
            "fewer workers or a smaller batch need less."
        )
    return None


class WorkerSetup:
    """``worker_init_fn``: what a worker must share with the main process, whatever its start
    method. A forked worker inherits these; a spawned or forkserver one starts fresh."""

    def __init__(self, *, deterministic: bool, sharing_strategy: str | None):
        self.deterministic, self.sharing_strategy = deterministic, sharing_strategy

    def __call__(self, worker_id: int) -> None:
        configure_determinism(self.deterministic, torch.device("cpu"))
        if self.sharing_strategy:
            torch.multiprocessing.set_sharing_strategy(self.sharing_strategy)
