"""The reference a loaderbench job is checked against: a stock PyTorch loop, nothing else.

    python scripts/bare_loop.py tensor --num-workers 2        # the article's TensorDataset
    python scripts/bare_loop.py shapes --mode train           # the default training workload

A plain ``DataLoader(dataset, batch_size, shuffle=True, num_workers)`` and a plain ``for x, y in
loader`` with one clock per epoch, started before ``iter(loader)`` (worker start-up counts, as a
user waits for it). Only the workload itself is built from loaderbench (the shapes dataset, the
Basic transforms and SmallCNN: the same data and model as the default job); the timed path runs
torch's own DataLoader, sampler and collate, and no loaderbench code other than the dataset's
``__getitem__`` and the model's ``forward``. Prints one JSON line: per-epoch samples/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


class Transformed(Dataset):
    """What a user writes: the transform applied in ``__getitem__``."""

    def __init__(self, base: Dataset, transform) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.transform(image), label


def tensor_data(size: int, image_size: int, num_classes: int) -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(size, 3, image_size, image_size, generator=g)
    return TensorDataset(images, torch.randint(num_classes, (size,), generator=g))


def shapes_data(size: int, val_size: int, image_size: int, num_classes: int):
    from loaderbench.data.shapes import ShapesDataset
    from loaderbench.transforms import Basic

    preset = Basic(image_size=image_size)
    kw = dict(image_size=image_size, num_classes=num_classes, seed=0)
    train = ShapesDataset(size=size, split="train", **kw)
    val = ShapesDataset(size=val_size, split="val", **kw)
    return Transformed(train, preset.train), Transformed(val, preset.val)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workload", choices=("tensor", "shapes"))
    p.add_argument("--mode", choices=("loader_only", "train"), default="loader_only")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--val-size", type=int, default=1024)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--num-classes", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    a = p.parse_args(argv)

    if a.workload == "tensor":
        train = tensor_data(a.size, a.image_size, a.num_classes)
        val = None
    else:
        train, val = shapes_data(a.size, a.val_size, a.image_size, a.num_classes)
    loader = DataLoader(train, batch_size=a.batch_size, shuffle=True, num_workers=a.num_workers)
    model = optimizer = None
    if a.mode == "train":
        from loaderbench.models import SmallCNN

        torch.manual_seed(0)
        model = SmallCNN(num_classes=a.num_classes, width=16)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)

    per_epoch = []
    for _ in range(a.epochs):
        n = 0
        t0 = time.perf_counter()
        if model is None:
            for x, _y in loader:
                n += len(x)
        else:
            model.train()
            for x, y in loader:
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                n += len(x)
        per_epoch.append(n / (time.perf_counter() - t0))
        if model is not None and val is not None:  # outside the clock, as loaderbench does
            model.eval()
            with torch.no_grad():
                for x, _y in DataLoader(val, batch_size=a.batch_size, num_workers=a.num_workers):
                    model(x)
    steady = statistics.median(per_epoch[1:] or per_epoch)
    print(json.dumps({"samples_per_s": per_epoch, "steady_samples_per_s": steady}))


if __name__ == "__main__":
    main()
