"""Before the loader starts: can the datasets travel to spawned workers, and do the batches in
flight fit in /dev/shm? Both are asked before the run opens.

Pickling: under ``spawn`` and ``forkserver`` a DataLoader pickles its dataset into every worker;
an open file handle, a lambda, a lock or a database connection inside it fails there with
torch's words ("cannot pickle '_io.BufferedReader' object") and no hint of which attribute holds
it. :func:`check_picklable` pickles the dataset into a sink that keeps nothing and, on failure,
walks down the attributes to the one that fails, naming it with its owner's class
(``MyDataset.handle``) and the fix. Tensors and numpy arrays are skipped: torch moves tensors
through shared memory rather than the pickle, and pickling gigabytes to a sink would cost
seconds for nothing.

Shared memory: worker batches travel to the main process through ``/dev/shm`` with either of
torch's sharing strategies: ``file_descriptor`` (the default) and ``file_system`` both allocate
there. A small /dev/shm (Docker's default is 64 MB) fails mid-epoch with "No space left on
device" or kills a worker with SIGBUS; ``file_system`` is the fix for "too many open files", not
for a small /dev/shm. :func:`check_shared_memory` warns before the loader starts;
:mod:`loaderbench.data.faults` explains the failure if it comes.
"""

from __future__ import annotations

import io
import pickle
import shutil
import threading
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from loaderbench.config import ConfigError
from loaderbench.data.loader.plan import TORCH_DEFAULT_PREFETCH

SHM = "/dev/shm"
MB = 1024 * 1024
HELD_BY_MAIN = 2  # batches in /dev/shm on the main process's side, besides those prefetched


def sample_bytes(sample: Any) -> int:
    """Bytes of the tensors in one sample (tuple, list, dict or tensor)."""
    if isinstance(sample, torch.Tensor):
        return sample.element_size() * sample.nelement()
    if isinstance(sample, dict):
        return sum(sample_bytes(v) for v in sample.values())
    if isinstance(sample, (list, tuple)):
        return sum(sample_bytes(v) for v in sample)
    return 8  # a Python number becomes one int64/float64 in the batch


def shm_usage() -> tuple[int, int] | None:
    """(free, total) bytes of /dev/shm, or None where there is none."""
    try:
        usage = shutil.disk_usage(SHM)
    except OSError:
        return None
    return usage.free, usage.total


def shm_free_bytes() -> int | None:
    usage = shm_usage()
    return usage[0] if usage else None


def prefetch_of(plan: Any) -> int:
    """Batches each worker keeps in flight (torch's default 2 when unset)."""
    return plan.effective.get("prefetch_factor") or TORCH_DEFAULT_PREFETCH


def check_shared_memory(plan: Any, batch_bytes: int) -> str | None:
    """A warning when the batches in flight (batch x prefetch_factor x num_workers) cannot fit
    in the free /dev/shm; None when they fit or there are no workers."""
    if plan.num_workers == 0 or batch_bytes <= 0:
        return None
    free = shm_free_bytes()
    prefetch = prefetch_of(plan)
    need = batch_bytes * prefetch * plan.num_workers
    if free is None or need <= free:
        return None
    return (
        f"shared memory: {plan.num_workers} workers x prefetch_factor {prefetch} x "
        f"{batch_bytes / MB:.1f} MB per batch = {need / MB:.0f} MB in flight, but {SHM} has "
        f"{free / MB:.0f} MB free. {shm_fixes(plan, batch_bytes, free)}"
    )


def shm_fixes(plan: Any, batch_bytes: int, free: int | None) -> str:
    """The fixes, with the worker count and the batch size that would fit in ``free``."""
    prefetch = prefetch_of(plan)
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


# --- pickling into spawned workers ---------------------------------------------------------

PICKLING_CONTEXTS = ("spawn", "forkserver")  # fork inherits the dataset: nothing is pickled
MAX_DEPTH = 12


class _Sink(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return len(b)


def _placeholder() -> None:
    return None


class _Probe(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (torch.Tensor, np.ndarray)):
            return _placeholder, ()
        return NotImplemented


def pickle_error(obj: Any) -> Exception | None:
    """The exception pickling ``obj`` raises (tensors and arrays left out), or None."""
    try:
        _Probe(_Sink(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    except Exception as exc:  # TypeError, PicklingError, AttributeError: whatever pickle says
        return exc
    return None


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"[{k!r}]", v
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            yield f"[{i}]", v
    else:
        state = getattr(obj, "__dict__", None)
        if state is None and hasattr(obj, "__getstate__"):
            try:
                state = obj.__getstate__()
            except Exception:
                state = None
        if isinstance(state, dict):
            for k, v in state.items():
                yield f".{k}", v
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                yield f".{slot}", getattr(obj, slot)


def find_unpicklable(obj: Any, path: str) -> tuple[str, str, Any, Exception] | None:
    """(path, owner class, object, error) of the innermost part of ``obj`` that cannot be
    pickled, or None when ``obj`` pickles."""
    error = pickle_error(obj)
    if error is None:
        return None
    found = (path, type(obj).__qualname__, obj, error)
    for _ in range(MAX_DEPTH):
        owner = found[2]
        for name, child in _children(owner):
            if (child_error := pickle_error(child)) is not None:
                found = (found[0] + name, type(owner).__qualname__ + name, child, child_error)
                break
        else:
            return found
    return found


def describe(value: Any) -> tuple[str, str]:
    """(what the value is, how to fix it) in words."""
    if isinstance(value, io.IOBase) or type(value).__name__ in ("TextIOWrapper", "BufferedReader"):
        return "an open file", (
            "open it in the worker instead: lazily on the first __getitem__ (keep None until "
            "then, and leave it out of __getstate__)"
        )
    if isinstance(value, types.FunctionType) and value.__name__ == "<lambda>":
        return "a lambda", "use a function defined at module level (or functools.partial of one)"
    if isinstance(value, types.FunctionType) and "<locals>" in value.__qualname__:
        return "a function defined inside another function", "define it at module level"
    if isinstance(value, types.GeneratorType):
        return "a generator", "keep what makes it and create it in __iter__ / __getitem__"
    if isinstance(value, (type(threading.Lock()), type(threading.RLock()))):
        return "a lock", "create it in the worker (lazily), or leave it out of __getstate__"
    kind = f"a {type(value).__module__}.{type(value).__qualname__}"
    return kind, (
        "create it in the worker instead (lazily on first use, or in __setstate__) and leave "
        "it out of __getstate__"
    )


def check_picklable(datasets: dict[str, Any], context: str | None, num_workers: int) -> None:
    """ConfigError naming the attribute when a dataset cannot go to ``context`` workers."""
    if not num_workers or context not in PICKLING_CONTEXTS:
        return
    for split, dataset in datasets.items():
        found = find_unpicklable(dataset, split)
        if found is None:
            continue
        path, owner, value, error = found
        what, fix = describe(value)
        raise ConfigError(
            f"loader.multiprocessing_context={context}: the {split} dataset cannot be pickled "
            f"into the workers: {owner} is {what} ({type(error).__name__}: {error}; path "
            f"{path}). Fix: {fix}; or use loader.multiprocessing_context=fork (Linux), or "
            "loader.num_workers=0"
        )
