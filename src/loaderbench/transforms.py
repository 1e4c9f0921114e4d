"""torchvision.transforms.v2 presets. Each preset is a small class with ``train`` and ``val``
pipelines; its inputs may be uint8/float tensors or PIL images, its output a float tensor.

``random`` says whether the train pipeline draws random numbers. Only then does a sample need
its own seeded generator; a deterministic pipeline runs as it would in a plain
``Dataset.__getitem__``. ``seeded`` says that its random transforms draw from that generator
(:mod:`loaderbench.random_transforms`), not from torch's global one: then the augmentation is
the same for loader threads too. A preset without it gets the global generator reseeded per
sample (``fork_rng``, ~10 µs a sample), which only worker processes keep apart.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

from loaderbench import random_transforms as rt

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_float(mean: tuple[float, ...], std: tuple[float, ...]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


def to_float(image: Any) -> Any:
    """A float tensor passes untouched (no copy); uint8 is scaled to [0, 1]; PIL to a tensor."""
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        return image
    return v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)


class NoTransforms:
    """Only what the model needs: a float tensor. An in-memory float tensor (the article's
    TensorDataset) reaches collate as it is, with no Compose and no copy."""

    random, seeded = False, True

    def __init__(self, *, image_size: int | None = None):
        self.train = self.val = to_float


class Basic:
    """To a float tensor at ``image_size`` and normalise; the same for train and val."""

    random, seeded = False, True

    def __init__(self, *, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.train = self.val = v2.Compose(
            [v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
            + _to_float(mean, std)
        )


def _crop_and_flip(image_size: int) -> list[v2.Transform]:
    return [
        v2.ToImage(),
        rt.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
        rt.RandomHorizontalFlip(),
    ]


JITTER = dict(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)


class Augment:
    """RandomResizedCrop + horizontal flip + colour jitter for training; Basic for val."""

    random = seeded = True

    def __init__(self, *, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.train = v2.Compose(
            [*_crop_and_flip(image_size), rt.ColorJitter(**JITTER), *_to_float(mean, std)]
        )
        self.val = Basic(image_size=image_size, mean=mean, std=std).val


class Heavy:
    """Augment plus costlier ops (rotation, blur, perspective, erasing): a CPU-bound pipeline."""

    random = seeded = True

    def __init__(self, *, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.train = v2.Compose(
            [
                *_crop_and_flip(image_size),
                rt.RandomRotation(15),
                rt.RandomPerspective(distortion_scale=0.2, p=0.5),
                rt.ColorJitter(**JITTER),
                rt.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5)),
            ]
            + _to_float(mean, std)
            + [rt.RandomErasing(p=0.25)]
        )
        self.val = Basic(image_size=image_size, mean=mean, std=std).val
