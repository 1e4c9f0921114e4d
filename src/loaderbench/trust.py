"""Which code a stored config would make loaderbench import, and which of it is not its own.

Reproducing a run rebuilds it from the ``config.yaml`` in the store, and building it imports
and calls whatever the config names: every ``_target_`` (the model, the optimizer, the
transforms; in a Hydra config also its callbacks, launcher and sweeper) and ``dataset.target``
/ ``dataset.val_target``. On a shared tracking server anyone who can write a run can name any
importable module there, so :mod:`loaderbench.reproduce` lists the names outside
:data:`ALLOWED` and refuses them unless told ``--trust``. Nothing here imports anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Matched on module boundaries: ``torch.optim.SGD`` is torch's, ``torchx.evil`` is not.
ALLOWED = ("loaderbench", "hydra_plugins.loaderbench_tune", "torch", "torchvision", "hydra")
TARGET_KEY = "_target_"
NAME_KEYS = ("dataset.target", "dataset.val_target")  # a dotted path loaderbench imports


def is_allowed(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in ALLOWED)


def importable_names(tree: Any, path: str = "") -> list[tuple[str, str]]:
    """``(key, dotted name)`` of every value in ``tree`` (plain containers, as
    ``OmegaConf.to_container`` gives them) that names code to import, in the tree's order."""
    found: list[tuple[str, str]] = []
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, str) and (key == TARGET_KEY or where in NAME_KEYS):
                found.append((where, value))
            else:
                found += importable_names(value, where)
    elif isinstance(tree, Sequence) and not isinstance(tree, str):
        for i, value in enumerate(tree):
            found += importable_names(value, f"{path}[{i}]")
    return found


def untrusted(tree: Any) -> list[tuple[str, str]]:
    """The names of :func:`importable_names` outside :data:`ALLOWED`."""
    return [(key, name) for key, name in importable_names(tree) if not is_allowed(name)]
