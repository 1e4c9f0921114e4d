"""The reference a loaderbench job is checked against: a stock loop, nothing else.

    python scripts/bare_loop.py tensor --num-workers 2        # the article's TensorDataset
    python scripts/bare_loop.py shapes --mode train           # the default training workload
    python scripts/bare_loop.py folder --root DIR --loop nodes --num-workers 4 --transforms augment
    python scripts/bare_loop.py custom --root DIR             # examples/mypkg's PackedJpegs

A plain ``DataLoader(dataset, batch_size, shuffle=True, num_workers)`` (``--loop dataloader``),
or the thread library's own pipeline with ``--num-workers`` threads, as its guide writes it
(``--loop nodes``: torchdata.nodes ParallelMapper → Batcher → Mapper(default_collate) →
Prefetcher; ``--loop spdl``: SPDL's PipelineBuilder, in input order), and a plain ``for x, y in
loader`` with one clock per epoch, started before ``iter(loader)`` (worker or thread start-up
counts, as a user waits for it). Only the workload itself is built from loaderbench (the shapes
dataset, an image folder's files, the transform presets, SmallCNN: the same data and model as
the job); the timed path runs the library's own sampler, batching and collate, and no
loaderbench code other than the dataset's ``__getitem__`` and the model's ``forward``. ``custom``
is a user's own Dataset (examples/mypkg's ``PackedJpegs``, Basic transforms in a wrapper as a
user writes one). Prints one JSON line: per-epoch samples/s.

``--hold-tracking`` is a diagnostic: before the loop, the process imports MLflow and opens a
SQLite store, as a job's process held them before the tracking process (~150 MB more anonymous
memory, the pandas MLflow imports included, which every worker's fork copies the page tables of).
Nothing of it runs in the loop.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
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


def folder_data(root: str, image_size: int, transforms: str, latency_ms: float) -> Dataset:
    from loaderbench import transforms as presets
    from loaderbench.data.imagefolder import make_imagefolder

    pair = make_imagefolder(
        root=root, image_size=image_size, read_latency_ms=latency_ms, verify="none"
    )
    preset = getattr(presets, transforms.capitalize())(image_size=image_size)
    return Transformed(pair.train, preset.train)


def custom_data(root: str, image_size: int) -> Dataset:
    from mypkg.data import PackedJpegs  # examples/mypkg, on PYTHONPATH

    from loaderbench.transforms import Basic

    return Transformed(PackedJpegs(root), Basic(image_size=image_size).train)


def hold_tracking() -> tuple:
    """What a job's process holds besides the loop: MLflow imported, a SQLite store open (by
    loaderbench's ``open_store``, as the job opens it), in a folder removed once dropped."""
    from loaderbench.store import open_store

    folder = tempfile.TemporaryDirectory(prefix="bare-loop-")
    client = open_store(f"sqlite:///{folder.name}/mlflow.db")
    client.search_experiments()
    return folder, client


class NodesLoader:
    """torchdata.nodes' own pipeline, as its guide migrates a DataLoader; an epoch per iter."""

    def __init__(self, dataset: Dataset, batch_size: int, threads: int):
        import torchdata.nodes as tn
        from torch.utils.data import RandomSampler, default_collate

        node = tn.SamplerWrapper(RandomSampler(dataset))
        node = tn.ParallelMapper(
            node, map_fn=dataset.__getitem__, num_workers=threads, method="thread", in_order=True
        )
        node = tn.Batcher(node, batch_size=batch_size, drop_last=False)
        node = tn.Mapper(node, default_collate)
        self.loader = tn.Loader(tn.Prefetcher(node, prefetch_factor=2 * threads))

    def __iter__(self):
        return iter(self.loader)


class SpdlLoader:
    """SPDL's own pipeline (PipelineBuilder), in input order, a failure raising; an epoch a
    pipeline, as its examples iterate."""

    def __init__(self, dataset: Dataset, batch_size: int, threads: int):
        self.dataset, self.batch_size, self.threads = dataset, batch_size, threads

    def __iter__(self):
        from spdl.pipeline import PipelineBuilder
        from torch.utils.data import default_collate

        order = torch.randperm(len(self.dataset)).tolist()
        pipeline = (
            PipelineBuilder()
            .add_source(order)
            .pipe(self.dataset.__getitem__, concurrency=self.threads, output_order="input")
            .aggregate(self.batch_size)
            .pipe(default_collate)
            .add_sink(2 * self.threads)
            .build(num_threads=self.threads, max_failures=0)
        )
        with pipeline.auto_stop():
            yield from pipeline.get_iterator()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workload", choices=("tensor", "shapes", "folder", "custom"))
    p.add_argument("--loop", choices=("dataloader", "nodes", "spdl"), default="dataloader")
    p.add_argument("--root", help="folder or custom: the image folder / mypkg's data folder")
    p.add_argument("--transforms", choices=("basic", "augment", "heavy"), default="basic")
    p.add_argument("--read-latency-ms", type=float, default=0.0)
    p.add_argument("--mode", choices=("loader_only", "train"), default="loader_only")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--val-size", type=int, default=1024)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--num-classes", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--hold-tracking", action="store_true", help="first open MLflow as a job did (see above)"
    )
    a = p.parse_args(argv)
    tracking = hold_tracking() if a.hold_tracking else None

    val = None
    if a.workload == "tensor":
        train = tensor_data(a.size, a.image_size, a.num_classes)
    elif a.workload == "folder":
        train = folder_data(a.root, a.image_size, a.transforms, a.read_latency_ms)
    elif a.workload == "custom":
        train = custom_data(a.root, a.image_size)
    else:
        train, val = shapes_data(a.size, a.val_size, a.image_size, a.num_classes)
    if a.loop == "nodes":
        loader = NodesLoader(train, a.batch_size, a.num_workers)
    elif a.loop == "spdl":
        loader = SpdlLoader(train, a.batch_size, a.num_workers)
    else:
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
    print(json.dumps({"samples_per_s": per_epoch, "steady_samples_per_s": steady}), flush=True)
    # The thread pipelines' threads end here, while the interpreter is whole: left to its exit,
    # torchdata's (still winding down from the last epoch) once aborted the process (SIGABRT).
    del loader, tracking
    gc.collect()


if __name__ == "__main__":
    main()
