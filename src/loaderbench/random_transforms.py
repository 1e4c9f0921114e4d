"""The presets' random transforms: torchvision's, drawing from each sample's own generator.

torchvision's v2 transforms draw their parameters from torch's global generator (``make_params``
takes none). Reseeding that generator per sample (``fork_rng`` + ``manual_seed``) gives every
sample the same augmentation in any worker *process*, but loader *threads* share it: two
threads reseeding it at once interleave their draws, and the training loop's own draws
(dropout) land in between. So :class:`~loaderbench.data.seeding.TransformedDataset` hands
each sample a ``torch.Generator`` of its own (:func:`loaderbench.sample_rng.drawing_from`), and
the classes here are torchvision's, with ``make_params`` (and the coin flip of the
``p``-transforms) drawing from it.

Their draws are torchvision 0.29's, call for call, from a generator seeded as the global one
was: the same seed gives the same pixels as stock torchvision under ``fork_rng`` + reseed
(tests/data/test_threads.py checks it), so histories recorded before stay reproducible. Outside
``drawing_from`` (a preset used in a user's own loop) they draw from the global generator,
as stock torchvision does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision.transforms import v2
from torchvision.transforms.v2._geometry import _get_perspective_coeffs
from torchvision.transforms.v2._utils import query_chw, query_size

from loaderbench.sample_rng import current as _g


def _uniform(low: float, high: float) -> float:
    return torch.empty(1).uniform_(low, high, generator=_g()).item()


def _randint(low: int, high: int) -> int:
    return int(torch.randint(low, high, size=(1,), generator=_g()))


class _Coin:
    """``_RandomApplyTransform.forward`` with its coin drawn from the sample's generator
    (torchvision's code otherwise, so the draws come in the same order)."""

    p: float

    def forward(self, *inputs: Any) -> Any:
        inputs = inputs if len(inputs) > 1 else inputs[0]
        flat_inputs, spec = tree_flatten(inputs)
        self.check_inputs(flat_inputs)
        if torch.rand(1, generator=_g()) >= self.p:
            return inputs
        needs = self._needs_transform_list(flat_inputs)
        params = self.make_params([x for x, need in zip(flat_inputs, needs, strict=True) if need])
        flat_outputs = [
            self.transform(x, params) if need else x
            for x, need in zip(flat_inputs, needs, strict=True)
        ]
        return tree_unflatten(flat_outputs, spec)


def _crop_box(area: int, scale, log_ratio, fits) -> tuple[int, int] | None:
    """RandomResizedCrop's and RandomErasing's search: a box's (first, second) side, or None
    after ten misses. ``fits(a, b)``: whether the sides drawn fit the image."""
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1])
        # torch.exp of the float32 draw, as torchvision: math.exp would round differently
        aspect = torch.exp(
            torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=_g())
        ).item()
        a, b = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if fits(a, b):
            return a, b
    return None


class RandomResizedCrop(v2.RandomResizedCrop):
    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        box = _crop_box(
            height * width,
            self.scale,
            self._log_ratio,
            lambda w, h: 0 < w <= width and 0 < h <= height,
        )
        if box is not None:
            w, h = box
            i, j = _randint(0, height - h + 1), _randint(0, width - w + 1)
        else:  # torchvision's fallback: a central crop
            in_ratio = float(width) / float(height)
            if in_ratio < min(self.ratio):
                w, h = width, int(round(width / min(self.ratio)))
            elif in_ratio > max(self.ratio):
                h, w = height, int(round(height * max(self.ratio)))
            else:
                w, h = width, height
            i, j = (height - h) // 2, (width - w) // 2
        return dict(top=i, left=j, height=h, width=w)


class RandomHorizontalFlip(_Coin, v2.RandomHorizontalFlip):
    pass


class ColorJitter(v2.ColorJitter):
    @staticmethod
    def _generate_value(left: float, right: float) -> float:
        return float(_uniform(left, right))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        fn_idx = torch.randperm(4, generator=_g())
        value = self._generate_value
        b = None if self.brightness is None else value(*self.brightness)
        c = None if self.contrast is None else value(*self.contrast)
        s = None if self.saturation is None else value(*self.saturation)
        h = None if self.hue is None else value(*self.hue)
        return dict(
            fn_idx=fn_idx, brightness_factor=b, contrast_factor=c, saturation_factor=s, hue_factor=h
        )


class RandomRotation(v2.RandomRotation):
    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return dict(angle=_uniform(self.degrees[0], self.degrees[1]))


class RandomPerspective(_Coin, v2.RandomPerspective):
    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = query_size(flat_inputs)
        bound_h = int(self.distortion_scale * (height // 2)) + 1
        bound_w = int(self.distortion_scale * (width // 2)) + 1
        topleft = [_randint(0, bound_w), _randint(0, bound_h)]
        topright = [_randint(width - bound_w, width), _randint(0, bound_h)]
        botright = [_randint(width - bound_w, width), _randint(height - bound_h, height)]
        botleft = [_randint(0, bound_w), _randint(height - bound_h, height)]
        start = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
        end = [topleft, topright, botright, botleft]
        return dict(coefficients=_get_perspective_coeffs(start, end))


class GaussianBlur(v2.GaussianBlur):
    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        sigma = _uniform(self.sigma[0], self.sigma[1])
        return dict(sigma=[sigma, sigma])


class RandomErasing(_Coin, v2.RandomErasing):
    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        img_c, img_h, img_w = query_chw(flat_inputs)
        if self.value is not None and len(self.value) not in (1, img_c):
            raise ValueError(
                "If value is a sequence, it should have either a single value or "
                f"{img_c} (number of inpt channels)"
            )
        box = _crop_box(
            img_h * img_w, self.scale, self._log_ratio, lambda h, w: h < img_h and w < img_w
        )
        if box is None:
            return dict(i=0, j=0, h=img_h, w=img_w, v=None)
        h, w = box
        if self.value is None:
            v = torch.empty([img_c, h, w], dtype=torch.float32).normal_(generator=_g())
        else:
            v = torch.tensor(self.value)[:, None, None]
        i, j = _randint(0, img_h - h + 1), _randint(0, img_w - w + 1)
        return dict(i=i, j=j, h=h, w=w, v=v)
