"""The datasets and what loads them: the surface the experiment uses.

One sub-package or module per dataset option (``dataset=...``): :mod:`.shapes` (the default),
:mod:`.fake`, :mod:`.shards`, :mod:`.imagefolder`, :mod:`.tensor`, :mod:`.custom`; each
returns a :class:`DatasetPair`. Shared by them: :mod:`.decode` (image bytes to tensors),
:mod:`.storage` (reads, emulated latency, the page cache, the disk), :mod:`.validate` (the
``dataset.*`` value checks), :mod:`.seeding` (per-sample randomness, each split with its
transform). Around the loader: :mod:`.loader`, the one door from ``loader.*`` to what yields
batches; :mod:`.preflight` (checks before the loader starts: pickling into spawned workers,
/dev/shm); :mod:`.faults` (loader failures explained).
"""

from loaderbench.data.faults import LoaderFailure, explain_loader_error
from loaderbench.data.loader import (
    Batches,
    LoaderPlan,
    build_loader,
    close_loader,
    epoch_samples,
    fit_plan,
    plan_loader,
    set_epoch,
)
from loaderbench.data.pair import DatasetPair
from loaderbench.data.preflight import check_picklable, check_shared_memory, sample_bytes
from loaderbench.data.seeding import (
    EpochSampler,
    TransformedDataset,
    TransformedIterable,
    augmentation,
    first_sample,
    sample_seed,
    transformed,
)

__all__ = [
    "Batches",
    "DatasetPair",
    "EpochSampler",
    "LoaderFailure",
    "LoaderPlan",
    "TransformedDataset",
    "TransformedIterable",
    "augmentation",
    "build_loader",
    "check_picklable",
    "check_shared_memory",
    "close_loader",
    "epoch_samples",
    "explain_loader_error",
    "first_sample",
    "fit_plan",
    "plan_loader",
    "sample_bytes",
    "sample_seed",
    "set_epoch",
    "transformed",
]
