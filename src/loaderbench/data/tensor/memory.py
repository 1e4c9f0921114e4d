"""``dataset=tensor`` in memory: float32 images generated into RAM, checked against the
available memory first.

The images are learnable, not pure noise: each class adds its own per-channel mean offset to
standard normal noise, so a model that pools over the image separates the classes and accuracy
rises above chance (the noise keeps each pixel uninformative on its own). Everything is drawn
from one explicit ``torch.Generator`` (:func:`class_offsets`), in the same order as the mapped
file is written (:mod:`.mapped`), so ``storage`` changes where the numbers live, not what they
are.
"""

from __future__ import annotations

import logging

import psutil
import torch
from torch.utils.data import TensorDataset

from loaderbench.config import ConfigError
from loaderbench.data.pair import DatasetPair, generated_fingerprint
from loaderbench.data.seeding import sample_seed
from loaderbench.data.storage import GB

log = logging.getLogger(__name__)

MEMORY_FRACTION = 0.8  # of the available memory the tensors may take; the rest is headroom
CLASS_OFFSET_SCALE = 0.5  # std of the per-class, per-channel mean offsets (noise std is 1)


def tensor_fingerprint(
    *, size: int, val_size: int, image_size: int, num_classes: int, seed: int
) -> str:
    """The generated tensor's fingerprint, in memory or mapped: the same numbers either way."""
    return generated_fingerprint(
        "tensor", size=size, val_size=val_size, image_size=image_size, classes=num_classes,
        seed=seed,
    )  # fmt: skip


def tensor_bytes(n: int, image_size: int) -> int:
    """Bytes of ``n`` float32 images 3×image_size×image_size plus their int64 labels."""
    return n * (3 * image_size * image_size * 4 + 8)


def check_memory(*, size: int, val_size: int, image_size: int) -> int:
    """Raise ConfigError when the tensors would not fit in the available memory; return the
    estimated bytes. Nothing is allocated here."""
    need = tensor_bytes(size + val_size, image_size)
    available = psutil.virtual_memory().available
    usable = int(available * MEMORY_FRACTION)
    if need <= usable:
        return need
    most = usable // tensor_bytes(1, image_size) - val_size
    lower = (
        f"lower dataset.size (at most ~{most} here) or dataset.image_size"
        if most >= 1
        else "lower dataset.image_size or dataset.val_size"
    )
    fix = (
        "pass dataset.storage=mmap (the same tensor written once to an .npy file and read "
        f"through a memory map: RAM stays bounded), or {lower}"
    )
    raise ConfigError(
        f"dataset.size={size} + dataset.val_size={val_size} images of "
        f"3×{image_size}×{image_size} float32 need {need / GB:.1f} GB; "
        f"{available / GB:.1f} GB is available ({MEMORY_FRACTION:.0%} of it usable); {fix}"
    )


def class_offsets(seed: int, num_classes: int) -> tuple[torch.Generator, torch.Tensor]:
    g = torch.Generator().manual_seed(sample_seed(seed, -5, 0))
    return g, torch.randn(num_classes, 3, generator=g) * CLASS_OFFSET_SCALE


def _images(
    n: int, labels: torch.Tensor, offsets: torch.Tensor, image_size: int, g: torch.Generator
) -> torch.Tensor:
    """Noise plus the class offsets, written in place: no temporary the size of the data."""
    images = torch.empty(n, 3, image_size, image_size)
    torch.randn(images.shape, generator=g, out=images)
    images.add_(offsets[labels].view(n, 3, 1, 1))
    return images


def make_in_memory(
    *, size: int, val_size: int, image_size: int, num_classes: int, seed: int
) -> DatasetPair:
    """In-memory ``TensorDataset`` splits, the memory checked before anything is allocated."""
    need = check_memory(size=size, val_size=val_size, image_size=image_size)
    g, offsets = class_offsets(seed, num_classes)
    splits = []
    for n in (size, val_size):
        labels = torch.randint(num_classes, (n,), generator=g)
        splits.append(TensorDataset(_images(n, labels, offsets, image_size, g), labels))
    log.info("generated %d + %d tensor images (%.2f GB)", size, val_size, need / GB)
    sizes = dict(size=size, val_size=val_size, image_size=image_size, num_classes=num_classes)
    return DatasetPair(
        train=splits[0],
        val=splits[1],
        num_classes=num_classes,
        fingerprint=tensor_fingerprint(**sizes, seed=seed),
        stats={"memory_gb": need / GB},
    )
