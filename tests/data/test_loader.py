"""build_loader: the normalisation table, the errors on wrong values, and what reaches torch."""

from __future__ import annotations

import pytest
import torch

from loaderbench.config import ConfigError, LoaderConfig
from loaderbench.data import TransformedDataset, build_loader, plan_loader
from loaderbench.data.loader import close_loader
from loaderbench.data.shapes import make_shapes

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("given", "expected", "changed"),
    [
        # meaningless with num_workers=0: normalised so a grid stays rectangular
        (dict(num_workers=0, prefetch_factor=4), dict(prefetch_factor=None), {"prefetch_factor"}),
        (
            dict(num_workers=0, persistent_workers=True),
            dict(persistent_workers=False),
            {"persistent_workers"},
        ),
        (
            dict(num_workers=0, multiprocessing_context="spawn"),
            dict(multiprocessing_context=None),
            {"multiprocessing_context"},
        ),
        (dict(num_workers=0, timeout=5.0), dict(timeout=0.0), {"timeout"}),
        # ignored by torch without an accelerator: switched off and recorded
        (dict(num_workers=2, pin_memory=True), dict(pin_memory=False), {"pin_memory"}),
        # meaningful: passed through untouched
        (
            dict(
                num_workers=2,
                prefetch_factor=4,
                persistent_workers=True,
                multiprocessing_context="spawn",
            ),
            dict(prefetch_factor=4, persistent_workers=True, multiprocessing_context="spawn"),
            set(),
        ),
    ],
)
def test_normalisation_table(given, expected, changed):
    plan = plan_loader(LoaderConfig(**given), device=CPU)
    for key, value in expected.items():
        assert getattr(plan, key) == value, key
    assert set(plan.reasons) == changed
    for key in changed:
        assert plan.effective[key] == getattr(plan, key)


def test_effective_values_name_what_torch_uses():
    plan = plan_loader(LoaderConfig(num_workers=2), device=CPU)
    assert plan.effective["prefetch_factor"] == 2  # torch's default when null
    assert plan.effective["multiprocessing_context"] in ("fork", "spawn", "forkserver")
    plan0 = plan_loader(LoaderConfig(num_workers=0), device=CPU)
    assert plan0.effective["prefetch_factor"] is None
    assert plan0.effective["multiprocessing_context"] is None


@pytest.mark.parametrize(
    ("given", "key"),
    [
        (dict(num_workers=-1), "loader.num_workers=-1"),
        (dict(batch_size=0), "loader.batch_size=0"),
        (dict(multiprocessing_context="threads"), "loader.multiprocessing_context=threads"),
        (dict(num_workers=2, prefetch_factor=0), "loader.prefetch_factor=0"),
        (dict(timeout=-1.0), "loader.timeout=-1.0"),
    ],
)
def test_wrong_values_name_the_key(given, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        plan_loader(LoaderConfig(**given), device=CPU)


def test_loader_settings_reach_torch_and_workers_stop():
    pair = make_shapes(size=40, val_size=8, image_size=16, num_classes=3, seed=0)
    plan = plan_loader(
        LoaderConfig(batch_size=8, num_workers=2, persistent_workers=True, prefetch_factor=3),
        device=CPU,
    )
    loader = build_loader(TransformedDataset(pair.train, None, 0), plan, seed=0)
    assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (2, 3, True)
    batches = list(loader)
    assert sum(len(b[1]) for b in batches) == 40
    workers = loader._iterator._workers
    assert all(w.is_alive() for w in workers)  # persistent: alive between epochs
    close_loader(loader)
    assert not any(w.is_alive() for w in workers)


def test_a_workers_batch_carries_labels_and_ids_in_one_shared_tensor():
    """Each tensor of a batch crosses from a worker as a shared-memory segment of its own: the
    ids share the labels' storage, so a batch costs two, as the user's (images, labels) does."""
    pair = make_shapes(size=24, val_size=8, image_size=16, num_classes=3, seed=0)
    plan = plan_loader(LoaderConfig(batch_size=8, num_workers=1), device=CPU)
    loader = build_loader(TransformedDataset(pair.train, None, 0), plan, seed=0)
    seen = []
    for images, labels, ids in loader:
        assert labels.untyped_storage().data_ptr() == ids.untyped_storage().data_ptr()
        assert labels.is_shared() and images.is_shared()  # both came from the worker
        assert labels.tolist() == [pair.train[i][1] for i in ids.tolist()]
        seen += ids.tolist()
    assert sorted(seen) == list(range(24))
