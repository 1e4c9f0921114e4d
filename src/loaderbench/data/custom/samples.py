"""A user's own ``torch.utils.data.Dataset`` as a loaderbench split: every sample checked and
turned into ``(image, label)``, every failure named by the class and the index.

:class:`UserDataset` (map-style) and :class:`UserIterable` (iterable) sit *inside* a
:class:`~loaderbench.data.pair.DatasetPair`, so the experiment wraps them in the same
per-sample seeding, transforms and accounting as loaderbench's own datasets. The check is a
few ``isinstance`` calls per sample (~1 µs), so it runs on every sample, in the workers too:
a wrong sample at index 17 345 is named when it is read, not as a collate error three frames
away from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from loaderbench.data.faults import LoaderFailure

DEBUG_HINT = "loader.num_workers=0 runs it in this process, where a debugger can stop on it"


class SampleError(LoaderFailure):
    """A user dataset's sample that cannot be used, or its ``__getitem__`` failing; the message
    names the class, the index and the fix.

    Raised in a DataLoader worker, torch re-raises it in the main process with the worker's
    whole traceback as the message; ``str()`` keeps the one line that says what went wrong and
    the traceback stays on the exception as a note (it reaches ``error.txt``).
    """

    def __init__(self, message: str):
        marker = f"{type(self).__name__}: "
        lines = [ln for ln in message.splitlines() if marker in ln]
        line = lines[-1].split(marker, 1)[1] if message.startswith("Caught ") and lines else message
        super().__init__(line)
        if line != message and hasattr(self, "add_note"):  # Python >= 3.11
            self.add_note(message)


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__module__}.{type(value).__qualname__}".replace("builtins.", "")


@dataclass(frozen=True)
class SampleSpec:
    """How to read one of the user's samples: ``(image, label)`` or a dict with two keys."""

    name: str  # the user's class, for messages
    num_classes: int
    image_key: str = "image"
    label_key: str = "label"

    def pair(self, sample: Any, where: str) -> tuple[Any, int]:
        """``(image, label)`` of ``sample`` (``where``: e.g. ``MyDataset[17]``), or SampleError."""
        if isinstance(sample, Mapping):
            missing = [k for k in (self.image_key, self.label_key) if k not in sample]
            if missing:
                raise SampleError(
                    f"{where} returned a dict with keys {sorted(map(str, sample))}, without "
                    f"{' and '.join(map(repr, missing))}; set dataset.image_key= and "
                    "dataset.label_key= to the keys of the image and the label"
                )
            image, label = sample[self.image_key], sample[self.label_key]
        elif isinstance(sample, (tuple, list)) and len(sample) == 2:
            image, label = sample
        else:
            n = f" of {len(sample)} items" if isinstance(sample, (tuple, list)) else ""
            raise SampleError(
                f"{where} returned {_kind(sample)}{n}; expected (image, label) or a dict with "
                f"'{self.image_key}' and '{self.label_key}'. Fix {self.name}.__getitem__"
            )
        return self._image(image, where), self._label(label, where)

    def _image(self, image: Any, where: str) -> Any:
        if isinstance(image, Image.Image):
            return image
        fix = f"Fix {self.name}.__getitem__ to return a C×H×W torch.Tensor or a PIL image"
        if not isinstance(image, torch.Tensor):
            if type(image).__name__ == "ndarray":
                fix += " (a numpy H×W×C array: torch.from_numpy(a).permute(2, 0, 1))"
            raise SampleError(f"{where} returned {_kind(image)} as the image. {fix}")
        if image.ndim != 3 or not (image.is_floating_point() or image.dtype == torch.uint8):
            if image.ndim == 3 and image.shape[-1] in (1, 3) and image.shape[0] not in (1, 3):
                fix += " (this one looks channels-last: image.permute(2, 0, 1))"
            elif image.ndim == 2:
                fix += " (a grey H×W image: image[None] adds the channel)"
            else:
                fix += ", uint8 or floating point"
            raise SampleError(f"{where} returned {_kind(image)} as the image. {fix}")
        return image

    def _label(self, label: Any, where: str) -> int:
        one = isinstance(label, torch.Tensor) and label.numel() == 1
        if one and not label.is_floating_point() or type(label).__module__ == "numpy":
            label = label.item() if hasattr(label, "item") else label  # a 0-d or numpy integer
        if not isinstance(label, int) or isinstance(label, bool):
            raise SampleError(
                f"{where} returned {_kind(label)} as the label; expected a class index (int). "
                f"Fix {self.name}.__getitem__"
            )
        if not 0 <= label < self.num_classes:
            raise SampleError(
                f"{where} returned label {label}, outside 0..{self.num_classes - 1} "
                f"(num_classes={self.num_classes}); set dataset.num_classes to the number of "
                "classes, or fix the labels"
            )
        return label


class UserDataset(Dataset):
    """A map-style user dataset (or the ``indices`` of it that a held-out split keeps):
    ``(image, label)`` per index, checked by ``spec``; errors name the user's own index."""

    def __init__(self, base: Any, spec: SampleSpec, indices: list[int] | None = None):
        self.base, self.spec, self.indices = base, spec, indices

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.base)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        i = self.indices[index] if self.indices is not None else index
        where = f"{self.spec.name}[{i}]"
        try:
            sample = self.base[i]
        except Exception as exc:
            raise SampleError(
                f"{where} raised {type(exc).__name__}: {exc}. Fix {self.spec.name}.__getitem__; "
                f"{DEBUG_HINT}"
            ) from exc
        return self.spec.pair(sample, where)

    def before_epoch(self, epoch: int) -> None:
        """The user's ``set_epoch`` (as DistributedSampler has), if their dataset has one."""
        if callable(set_epoch := getattr(self.base, "set_epoch", None)):
            set_epoch(epoch)


class UserIterable(IterableDataset):
    """An iterable user dataset: its stream, each sample checked by ``spec``; errors name the
    sample's position in the stream of the worker that read it.

    The dataset splits its stream between workers itself (``get_worker_info()``), as torch
    requires of every IterableDataset; ``length`` is its ``len()`` or ``dataset.size``.
    """

    def __init__(self, base: Any, spec: SampleSpec, length: int):
        self.base, self.spec, self.length = base, spec, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        info = get_worker_info()
        worker = f" (worker {info.id})" if info is not None else ""
        name = self.spec.name
        it, position = iter(self.base), 0
        while True:
            try:
                sample = next(it)
            except StopIteration:
                return
            except Exception as exc:
                raise SampleError(
                    f"iterating {name} raised {type(exc).__name__}: {exc} at sample "
                    f"{position}{worker}. Fix {name}.__iter__; {DEBUG_HINT}"
                ) from exc
            yield self.spec.pair(sample, f"{name} sample {position}{worker}")
            position += 1

    def before_epoch(self, epoch: int) -> None:
        if callable(set_epoch := getattr(self.base, "set_epoch", None)):
            set_epoch(epoch)
