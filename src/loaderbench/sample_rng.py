"""Each sample's own random generator: set by whoever loads the sample, read by the transforms.

:class:`~loaderbench.data.seeding.TransformedDataset` draws a sample's augmentation inside
:func:`drawing_from` its own ``torch.Generator`` (seeded by seed, epoch and index); the presets'
random transforms (:mod:`loaderbench.random_transforms`) read it with :func:`current`. A
contextvar is per thread, so loader threads never see each other's generators. (Here, not in
the transforms' module: the loaders import this without importing torchvision.)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch

# a contextvar is per thread (and per asyncio task): each loader thread sees its own sample's
_CURRENT: contextvars.ContextVar[torch.Generator | None] = contextvars.ContextVar(
    "loaderbench_sample_generator", default=None
)


@contextlib.contextmanager
def drawing_from(generator: torch.Generator) -> Iterator[None]:
    """The presets' random transforms draw from ``generator`` in this block, in this thread."""
    token = _CURRENT.set(generator)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> torch.Generator | None:
    """The generator of the sample being transformed in this thread (None: outside one, draw
    from the global generator as stock torchvision does)."""
    return _CURRENT.get()
