"""``dataset=custom``'s builder: the user's class called, its splits made and their first
samples checked (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import torch
from torch.utils.data import IterableDataset

from loaderbench.config import locate
from loaderbench.data.custom.samples import SampleSpec, UserDataset, UserIterable
from loaderbench.data.pair import DatasetPair
from loaderbench.data.seeding import sample_seed
from loaderbench.data.validate import check_count, check_fraction, fail

log = logging.getLogger(__name__)


def _build(key: str, path: str, kwargs: dict[str, Any]) -> Any:
    target = locate(f"dataset.{key}", path)
    if not callable(target):
        why = f"is {type(target).__qualname__}, not a class or function"
        raise fail(key, path, why, "name your Dataset class, or a function that returns one")
    call = f"{getattr(target, '__qualname__', path)}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        dataset = target(**kwargs)
    except Exception as exc:
        which = "dataset.val_kwargs" if key == "val_target" else "dataset.kwargs"
        raise fail(
            key,
            path,
            f"{call} raised {type(exc).__name__}: {exc}",
            f"check {which} (add one with +{which}.NAME=VALUE)",
        ) from exc
    iterable = isinstance(dataset, IterableDataset)
    if not iterable and not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise fail(
            key,
            path,
            f"{call} gave {type(dataset).__qualname__}, which is neither a map-style dataset "
            "(__getitem__ and __len__) nor a torch.utils.data.IterableDataset",
            "point it at a Dataset class, or a function that returns one",
        )
    return dataset


def _num_classes(num_classes: Any, dataset: Any, name: str) -> int:
    if num_classes is None:
        classes = getattr(dataset, "classes", None)
        num_classes = len(classes) if classes is not None else getattr(dataset, "num_classes", None)
        if num_classes is None:
            raise fail(
                "num_classes",
                None,
                f"{name} has no `classes` or `num_classes` attribute to count them from",
                "pass dataset.num_classes=N",
            )
    check_count("num_classes", num_classes, least=2, example=10)
    return num_classes


def _split(ds: Any, spec: SampleSpec, indices: list[int] | None, limit: Any, key: str) -> Any:
    """One split as a UserDataset (its first ``limit`` samples) or a UserIterable (of length
    ``len(ds)``, else ``limit``), its first sample checked."""
    if isinstance(ds, IterableDataset):
        try:
            length = len(ds)
        except TypeError:
            length = None
        if length is not None and limit is not None:
            why = f"{spec.name} has its own length ({length}); a stream is not cut short here"
            raise fail(key, limit, why, f"drop dataset.{key} (null)")
        if length is None and limit is None:
            why = f"{spec.name} is an IterableDataset without __len__"
            raise fail(key, None, why, f"pass dataset.{key}=N, the samples one epoch yields")
        if length is None:
            check_count(key, limit, least=1, example=4096)
        split = UserIterable(ds, spec, length or limit)
        if next(iter(split), None) is None:  # the first sample, checked now
            why = f"{spec.name} yielded no sample"
            raise fail(key, limit, why, f"check {spec.name}.__iter__ and dataset.kwargs")
        return split
    indices = list(range(len(ds))) if indices is None else indices
    if limit is not None:
        check_count(key, limit, least=1, most=len(indices), example=min(len(indices), 4096))
        indices = indices[:limit]
    if not indices:
        raise fail(key, limit, f"the split of {spec.name} is empty", "give it samples")
    split = UserDataset(ds, spec, indices)
    split[0]  # the first sample, checked now: SampleError names it
    return split


def _held_out(n: int, fraction: Any, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) indices: ``round(n * fraction)`` of ``0..n-1`` chosen by ``seed``."""
    check_fraction(fraction)
    n_val = round(n * fraction)
    if not 1 <= n_val < n:
        raise fail(
            "val_fraction",
            fraction,
            f"holds out {n_val} of {n} samples: each split needs at least one",
            "pick a fraction that leaves both splits a sample, or pass dataset.val_target",
        )
    g = torch.Generator().manual_seed(sample_seed(seed, -6, 0))
    order = torch.randperm(n, generator=g).tolist()
    return sorted(order[n_val:]), sorted(order[:n_val])


def make_custom(
    *,
    target: str,
    kwargs: dict[str, Any] | None = None,
    val_target: str | None = None,
    val_kwargs: dict[str, Any] | None = None,
    val_fraction: float = 0.2,
    num_classes: int | None = None,
    image_key: str = "image",
    label_key: str = "label",
    size: int | None = None,
    val_size: int | None = None,
    image_size: int | None = None,  # read by the transforms (${dataset.image_size}), not here
    seed: int = 0,
) -> DatasetPair:
    """The user's dataset (``target(**kwargs)``) and its validation split, checked."""
    kwargs, val_kwargs = dict(kwargs or {}), dict(val_kwargs or {})
    base = _build("target", target, kwargs)
    name = type(base).__qualname__
    spec = SampleSpec(name, _num_classes(num_classes, base, name), image_key, label_key)
    iterable = isinstance(base, IterableDataset)
    if val_target or val_kwargs:
        val_base = _build("val_target", val_target or target, kwargs | val_kwargs)
        val_spec = SampleSpec(type(val_base).__qualname__, spec.num_classes, image_key, label_key)
        splits = {"train": (base, spec, None), "val": (val_base, val_spec, None)}
        held_out = None
    elif iterable:
        raise fail(
            "val_target",
            None,
            f"{name} is an IterableDataset: it cannot be split by val_fraction without reading "
            "the held-out samples in every training epoch",
            "pass the validation stream: dataset.val_target=... and/or +dataset.val_kwargs.NAME=...",
        )
    else:
        if (n := len(base)) < 2:
            raise fail(
                "target", target, f"{name} has {n} samples", "point it at data with at least 2"
            )
        train_idx, val_idx = _held_out(n, val_fraction, seed)
        splits = {"train": (base, spec, train_idx), "val": (base, spec, val_idx)}
        held_out = val_fraction

    train = _split(*splits["train"], size, "size")
    val = _split(*splits["val"], val_size, "val_size")
    built = {"train": train, "val": val}
    log.info(
        "custom dataset %s: %d train, %d val samples, %d classes%s",
        name,
        len(built["train"]),
        len(built["val"]),
        spec.num_classes,
        f" (val held out: {held_out:.0%})" if held_out else "",
    )
    ident = dict(
        target=target, kwargs=kwargs, val_target=val_target, val_kwargs=val_kwargs,
        held_out=held_out, seed=seed, train=len(built["train"]), val=len(built["val"]),
        own=str(getattr(base, "fingerprint", "")),
    )  # fmt: skip
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
    return DatasetPair(
        train=built["train"],
        val=built["val"],
        num_classes=spec.num_classes,
        fingerprint=f"custom-{digest[:16]}",
        user_class=name,
    )
