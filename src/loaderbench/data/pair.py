"""What every dataset option returns: the train and val splits, their class count and the
fingerprint that says which data was read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset


@dataclass
class DatasetPair:
    """The train and val splits of a dataset option, before transforms.

    ``train``/``val`` map an integer index to ``(image, label)`` where the image is whatever the
    transform presets accept (uint8 or float tensor, PIL image). ``fingerprint`` identifies the
    data read (two runs with equal fingerprints read the same data); ``stats`` are numbers worth
    logging once per run (e.g. skipped files) under ``data/<name>``. ``user_class``: the
    user's own Dataset class, whose ``__getitem__`` runs (``dataset=custom``): random numbers it
    draws itself are outside the same-augmentation promise.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    fingerprint: str
    stats: dict[str, float] = field(default_factory=dict)
    user_class: str | None = None


def generated_fingerprint(kind: str, **params: Any) -> str:
    """``<kind>-<hash>`` of a generated dataset's parameters (the same parameters, the same
    samples)."""
    ident = kind + ":" + ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{kind}-" + hashlib.sha256(ident.encode()).hexdigest()[:16]
