"""Can the datasets travel to spawned workers? Asked before the run opens, by trying.

Under ``spawn`` and ``forkserver`` a DataLoader pickles its dataset into every worker; an open
file handle, a lambda, a lock or a database connection inside it fails there with torch's
words ("cannot pickle '_io.BufferedReader' object") and no hint of which attribute holds it.
:func:`check_picklable` pickles the dataset into a sink that keeps nothing and, on failure,
walks down the attributes to the one that fails, naming it with its owner's class
(``MyDataset.handle``) and the fix. Tensors and numpy arrays are skipped: torch moves tensors
through shared memory rather than the pickle, and pickling gigabytes to a sink would cost
seconds for nothing.
"""

from __future__ import annotations

import io
import pickle
import threading
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from loaderbench.config import ConfigError

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
