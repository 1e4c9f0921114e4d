"""``dataset=fake``: torchvision's FakeData (PIL images of noise, random labels: accuracy stays
at chance), for exercising a pipeline with a PIL decode-free source; it needs a transforms preset
that turns PIL images into tensors (``basic``, ``augment``, ``heavy``).
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.datasets import FakeData
from torchvision.transforms import ToPILImage

from loaderbench.data.pair import DatasetPair, generated_fingerprint
from loaderbench.data.seeding import sample_seed
from loaderbench.data.validate import check_sizes


class SeededFakeData(FakeData):
    """FakeData's samples, drawn from a private generator.

    torchvision's FakeData calls ``torch.manual_seed`` per sample and restores only the CPU
    state (the CUDA generators stay reseeded); the same seed in a private generator gives the
    very same pixels and labels without touching any global state.
    """

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__} index {index} out of range")
        g = torch.Generator().manual_seed(index + self.random_offset)
        img = ToPILImage()(torch.randn(*self.image_size, generator=g))
        target = int(
            torch.randint(0, self.num_classes, size=(1,), dtype=torch.long, generator=g)[0]
        )
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


def make_fake(
    *, size: int, val_size: int, image_size: int, num_classes: int = 10, seed: int
) -> DatasetPair:
    """torchvision FakeData splits (PIL RGB images); val's seeds follow train's, so they differ."""
    check_sizes(size=size, val_size=val_size, image_size=image_size, num_classes=num_classes)
    offset = sample_seed(seed, -4, 0) >> 2  # leaves room below 2**63 for offset + index
    shape = (3, image_size, image_size)
    params = dict(
        size=size, val_size=val_size, image_size=image_size, classes=num_classes, seed=seed
    )
    return DatasetPair(
        train=SeededFakeData(size, shape, num_classes, random_offset=offset),
        val=SeededFakeData(val_size, shape, num_classes, random_offset=offset + size),
        num_classes=num_classes,
        fingerprint=generated_fingerprint("fake", **params),
    )
