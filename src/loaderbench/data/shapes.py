"""The embedded default dataset: coloured shapes on textured backgrounds, generated per index.

Sample ``i`` of split ``s`` is a pure function of ``(seed, s, i)``: nothing is stored, memory
stays flat whatever the size, and every worker process produces the same pixels. The class is
the shape; colour, size, position, rotation and the background texture vary, so a small CNN
has something to learn and random guessing is far behind.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import Dataset

from loaderbench.data.pair import DatasetPair
from loaderbench.data.validate import check_count

SHAPES = ("disk", "square", "triangle", "plus", "ring", "diamond", "cross", "bars", "half", "dots")
_SPLITS = {"train": 0, "val": 1}


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of a unit-sized shape in rotated, centred coordinates ``u``, ``v`` (radius ~1)."""
    au, av = np.abs(u), np.abs(v)
    r = np.hypot(u, v)
    if kind == "disk":
        return r <= 1.0
    if kind == "square":
        return np.maximum(au, av) <= 0.8
    if kind == "triangle":
        return (v <= 0.7) & (v >= 1.7 * au - 1.0)
    if kind == "plus":
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if kind == "ring":
        return (r <= 1.0) & (r >= 0.6)
    if kind == "diamond":
        return au + av <= 1.0
    if kind == "cross":
        return (np.abs(u - v) <= 0.4) & (np.abs(u + v) <= 2.0) | (np.abs(u + v) <= 0.4) & (
            np.abs(u - v) <= 2.0
        )
    if kind == "bars":
        return (au <= 0.9) & (av <= 0.9) & (np.mod(np.floor((u + 1.0) / 0.45), 2) == 0)
    if kind == "half":
        return (r <= 1.0) & (v >= 0.0)
    if kind == "dots":
        centres = ((-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5))
        return np.any([np.hypot(u - a, v - b) <= 0.33 for a, b in centres], axis=0)
    raise ValueError(kind)


class ShapesDataset(Dataset):
    """Procedural images: returns ``(uint8 tensor 3×H×W, label)`` for an integer index.

    A wrong size, image size or class count is a ConfigError naming the ``dataset`` key.
    """

    def __init__(self, *, size: int, image_size: int, num_classes: int, seed: int, split: str):
        check_count("size" if split == "train" else "val_size", size, least=1, example=4096)
        check_count("image_size", image_size, least=8, example=64, note=" pixels")
        names = f" (the shapes: {', '.join(SHAPES)})"
        check_count("num_classes", num_classes, least=2, most=len(SHAPES), example=6, note=names)
        if split not in _SPLITS:
            raise ValueError(f"split={split!r}: choose one of {', '.join(_SPLITS)}")
        self.size, self.image_size, self.num_classes = size, image_size, num_classes
        self.seed, self.split = seed, split
        grid = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size * 2.0 - 1.0
        self._x, self._y = np.meshgrid(grid, grid)  # shared by all samples, read-only

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = np.random.default_rng((self.seed, _SPLITS[self.split], index))
        label = int(rng.integers(self.num_classes))
        x, y = self._x, self._y

        # Background: two random colours mixed by an oriented grating plus pixel noise.
        bg_a, bg_b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        theta, freq = rng.uniform(0, np.pi), rng.uniform(2, 8)
        grating = 0.5 + 0.5 * np.sin(freq * np.pi * (x * np.cos(theta) + y * np.sin(theta)))
        img = bg_a[:, None, None] + (bg_b - bg_a)[:, None, None] * grating[None]
        img += rng.normal(0, 12, img.shape)

        # Foreground: the class's shape, rotated, scaled and placed at random, in a colour
        # pushed away from the background's mean so it stays visible.
        radius = rng.uniform(0.35, 0.6)
        cx, cy = rng.uniform(-1 + radius, 1 - radius, 2)
        # A small tilt only: square/diamond and plus/cross are 45° apart.
        phi = rng.uniform(-0.35, 0.35)
        c, s = np.cos(phi), np.sin(phi)
        u = ((x - cx) * c + (y - cy) * s) / radius
        v = (-(x - cx) * s + (y - cy) * c) / radius
        mask = _shape_mask(SHAPES[label], u, v)
        bg_mean = (bg_a + bg_b) / 2
        fg = np.where(bg_mean > 127, rng.uniform(0, 90, 3), rng.uniform(165, 255, 3))
        img = np.where(mask[None], fg[:, None, None], img)

        return torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)), label


def make_shapes(
    *, size: int, val_size: int, image_size: int, num_classes: int, seed: int
) -> DatasetPair:
    """Train and val splits of the procedural shapes dataset (disjoint random streams)."""
    kwargs = dict(image_size=image_size, num_classes=num_classes, seed=seed)
    ident = f"shapes:{size},{val_size},{image_size},{num_classes},{seed}"
    return DatasetPair(
        train=ShapesDataset(size=size, split="train", **kwargs),
        val=ShapesDataset(size=val_size, split="val", **kwargs),
        num_classes=num_classes,
        fingerprint="shapes-" + hashlib.sha256(ident.encode()).hexdigest()[:16],
    )
