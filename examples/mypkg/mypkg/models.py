"""``Net``: a small convolutional model. loaderbench passes ``num_classes`` and, because the
signature names it, ``input_shape`` (C, H, W of one transformed sample): here the input
channels come from it; a model with a fixed-size head would size it from H and W."""

from __future__ import annotations

from torch import nn


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.MaxPool2d(2)]  # fmt: skip


class Net(nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], width: int = 24):
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            *_block(channels, width), *_block(width, 2 * width), *_block(2 * width, 4 * width)
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes)
        )

    def forward(self, x):
        return self.head(self.features(x))
