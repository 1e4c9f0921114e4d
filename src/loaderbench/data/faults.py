"""What goes wrong between the loader's workers and the training loop, said with its cause and
fix.

torch reports a full /dev/shm, too many open files, a stalled batch or a killed worker in its own
raw words; :func:`explain_loader_error` turns them into the cause and the fixes (the /dev/shm
arithmetic is :mod:`loaderbench.data.preflight`'s, which warns before the loader starts). A
:class:`LoaderFailure` is a failure whose message already says both.
"""

from __future__ import annotations

from typing import Any

from loaderbench.data.preflight import MB, SHM, prefetch_of, shm_fixes, shm_usage


class LoaderFailure(RuntimeError):
    """The loader failed for a reason with a known fix; the message says both."""


class StuckLoader(BaseException):  # noqa: N818 (not an error of the job: the process must end)
    """A loader thread that outlived its job, stuck in ``__getitem__``: nothing in the process
    can stop it, so an in-process sweep ends here rather than measure its next job beside it.
    (A BaseException: Hydra records an Exception as the job's failure and goes on.)"""


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
        free, total = shm_usage() or (None, None)
        size = f"{total / MB:.0f} MB ({(free or 0) / MB:.0f} MB free now)" if total else "?"
        return (
            f"out of shared memory: workers pass batches through {SHM}, which holds {size}; "
            f"one batch needs {batch_bytes / MB:.1f} MB, x prefetch_factor "
            f"{prefetch_of(plan)} x {plan.num_workers} workers. "
            + shm_fixes(plan, batch_bytes, free)
            + " (loader.sharing_strategy=file_system is the fix for 'too many open files', "
            "not for this.)"
        )
    if "Too many open files" in text or "received 0 items of ancdata" in text:
        return (
            "too many open files: each shared batch holds a file descriptor. Fixes: "
            "loader.sharing_strategy=file_system, or raise the limit (ulimit -n 65536)."
        )
    if "DataLoader timed out" in text or "loader threads timed out" in text:
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
