"""Small image classifiers, randomly initialised (nothing is downloaded)."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


class SmallCNN(nn.Module):
    """Four conv blocks and a linear head; works at any input resolution (global pooling)."""

    def __init__(self, *, num_classes: int, width: int = 32, channels_last: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, width * 2, width * 4, width * 4):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
        )
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def torchvision_model(*, arch: str, num_classes: int, channels_last: bool = False) -> nn.Module:
    """A torchvision architecture (``resnet18``, ``mobilenet_v3_small``, ...), random weights."""
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
