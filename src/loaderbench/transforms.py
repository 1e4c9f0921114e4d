"""torchvision.transforms.v2 presets. Each preset is a small class with ``train`` and ``val``
pipelines; its inputs may be uint8/float tensors or PIL images, its output a float tensor."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_float(mean: tuple[float, ...], std: tuple[float, ...]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


class NoTransforms:
    """Only what the model needs: a float tensor (uint8 scaled to [0, 1]; float passes as is).
    No resizing, no normalisation, no randomness."""

    def __init__(self, *, image_size: int | None = None):
        self.train = self.val = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


class Basic:
    """To a float tensor at ``image_size`` and normalise; the same for train and val."""

    def __init__(self, *, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.train = self.val = v2.Compose(
            [v2.ToImage(), v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
            + _to_float(mean, std)
        )


class Augment:
    """RandomResizedCrop + horizontal flip + colour jitter for training; Basic for val."""

    def __init__(self, *, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.train = v2.Compose(
            [
                v2.ToImage(),
                v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
            ]
            + _to_float(mean, std)
        )
        self.val = Basic(image_size=image_size, mean=mean, std=std).val


class Heavy:
    """Augment plus costlier ops (rotation, blur, perspective, erasing): a CPU-bound pipeline."""

    def __init__(self, *, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.train = v2.Compose(
            [
                v2.ToImage(),
                v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(15),
                v2.RandomPerspective(distortion_scale=0.2, p=0.5),
                v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05),
                v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5)),
            ]
            + _to_float(mean, std)
            + [v2.RandomErasing(p=0.25)]
        )
        self.val = Basic(image_size=image_size, mean=mean, std=std).val
