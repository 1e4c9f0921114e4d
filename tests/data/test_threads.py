"""``loader.backend=threads``: the same contract as the DataLoader (issue 26) — the same batches
bit for bit, the presets' augmentation drawn from each sample's own generator, every knob
recorded with what it meant, and a failing or stuck ``__getitem__`` leaving no thread behind."""

from __future__ import annotations

import importlib.util
import threading

import pytest
import torch
from torchvision.transforms import v2

from loaderbench import keys, tracking
from loaderbench.config import ConfigError, LoaderConfig
from loaderbench.data import plan_loader
from loaderbench.data.custom.samples import SampleError
from loaderbench.data.faults import LoaderFailure, StuckLoader
from loaderbench.data.loader.threads import _TARGETS
from loaderbench.data.seeding import sample_seed
from loaderbench.experiment import Launch, run
from loaderbench.sample_rng import drawing_from
from loaderbench.transforms import IMAGENET_MEAN, IMAGENET_STD, JITTER, Augment, Heavy
from tests.helpers import SMALL, compose_config, loader_batches, same_batches

CPU = torch.device("cpu")
# 4 batches of 8 an epoch, two epochs: where a thread-dependent draw would show
TINY = [*SMALL, "mlflow.enabled=false", "dataset.size=32", "dataset.val_size=8"]
TINY += ["dataset.image_size=16", "loader.batch_size=8"]
USER = ["dataset=custom", "dataset.size=null", "dataset.val_size=null", "dataset.image_size=16"]
USER += ["dataset.target=tests.user_datasets.Tensors"]


def loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith(_TARGETS)]


def stock(preset: str, size: int) -> v2.Compose:
    """The preset as stock torchvision writes it: every draw from the global generator."""
    head = [v2.ToImage(), v2.RandomResizedCrop(size, scale=(0.5, 1.0)), v2.RandomHorizontalFlip()]
    norm = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if preset == "augment":
        return v2.Compose([*head, v2.ColorJitter(**JITTER), *norm])
    middle = [
        v2.RandomRotation(15),
        v2.RandomPerspective(distortion_scale=0.2, p=0.5),
        v2.ColorJitter(**JITTER),
        v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5)),
    ]
    return v2.Compose([*head, *middle, *norm, v2.RandomErasing(p=0.25)])


@pytest.mark.parametrize(("preset", "cls"), [("augment", Augment), ("heavy", Heavy)])
def test_presets_draw_from_the_sample_generator_what_stock_torchvision_draws(preset, cls):
    """The same pixels as the reseeded global generator gave: recorded histories still hold."""
    image = torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8, generator=torch.Generator())
    ours, theirs = cls(image_size=16).train, stock(preset, 16)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    torch.set_num_threads(1)  # a 16-pixel blur on 2 busy cores: 6 ms on one, 40 ms on two
    try:
        for index in range(40):
            seed = sample_seed(0, 1, index)
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                expected = theirs(image)
            with drawing_from(torch.Generator().manual_seed(seed)):
                assert torch.equal(ours(image), expected), index
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator untouched


@pytest.mark.parametrize("transforms", ["augment", "heavy"])
def test_threads_deliver_the_dataloaders_batches_bit_for_bit(transforms):
    cfg = [*TINY, f"transforms={transforms}"]
    reference = loader_batches(compose_config(cfg))  # the DataLoader, num_workers=0
    for threads in (2, 4):
        got = loader_batches(
            compose_config([*cfg, "loader.backend=threads", f"loader.num_workers={threads}"])
        )
        assert same_batches(reference, got), threads
    assert not loader_threads()


def test_a_thread_run_records_its_backend_and_what_the_process_knobs_meant():
    tracker = tracking.InMemoryTracker()
    cfg = compose_config(
        [*TINY, "loader.backend=threads", "loader.num_workers=2", "transforms=augment"]
        + ["loader.multiprocessing_context=fork", "loader.persistent_workers=true"]
    )
    run(cfg, tracker=tracker, launch=Launch())
    assert tracker.status == "FINISHED"
    p, t = tracker.params, tracker.tags
    assert p[keys.BACKEND_EFFECTIVE] == "threads" and p[keys.GIL_EFFECTIVE] is True
    assert p[keys.BACKEND_LIBRARY_EFFECTIVE].startswith("torchdata 0.11")
    assert p["effective.multiprocessing_context"] is None
    assert "no process" in t["effective.multiprocessing_context.reason"]
    assert p["effective.persistent_workers"] is False and "effective.persistent_workers.reason" in t
    assert t[keys.AUGMENTATION_TAG] == "seeded"
    assert t[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK
    assert not loader_threads()


def test_zero_threads_is_the_dataloader_at_zero_workers():
    plan = plan_loader(LoaderConfig(backend="threads", num_workers=0), device=CPU)
    assert plan.backend == "dataloader" and "num_workers=0" in plan.reasons["backend"]
    assert plan.effective["backend_library"].startswith("torch ")


def test_a_wrong_backend_and_a_missing_library_are_one_clear_line(monkeypatch):
    with pytest.raises(ConfigError, match=r"loader\.backend=processes: choose one of dataloader"):
        plan_loader(LoaderConfig(backend="processes"), device=CPU)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchdata" else real(name)
    )
    with pytest.raises(ConfigError, match=r"needs torchdata.*loaderbench\[threads\]"):
        plan_loader(LoaderConfig(backend="threads", num_workers=2), device=CPU)


def test_a_stream_is_refused_under_threads():
    cfg = compose_config(
        [*TINY, *USER[:-1], "dataset.target=tests.user_datasets.Stream"]
        + ["+dataset.val_kwargs.offset=1000", "loader.backend=threads", "loader.num_workers=2"]
    )
    with pytest.raises(ConfigError, match=r"loader\.backend=threads: loader threads read"):
        run(cfg, tracker=tracking.InMemoryTracker(), launch=Launch())


def test_an_exception_in_getitem_fails_the_run_naming_the_index_and_leaves_no_thread():
    cfg = compose_config(
        [*TINY, *USER, "+dataset.kwargs.raise_at=50", "dataset.val_fraction=0.05"]
        + ["loader.backend=threads", "loader.num_workers=2"]
    )
    tracker = tracking.InMemoryTracker()
    with pytest.raises(SampleError, match=r"^Tensors\[50\] raised KeyError: 'no record 50'"):
        run(cfg, tracker=tracker, launch=Launch())
    assert tracker.status == "FAILED"
    assert "Tensors[50]" in tracker.texts["error.txt"]
    assert not loader_threads()


class _Sweep:
    """An in-process sweep's parent, as the sweep callback registers it."""

    def interrupt(self, signal_name):
        raise AssertionError("the command's main() closes the sweep, not the job")

    def log_on_parent(self, metrics):
        pass


def test_a_thread_stuck_past_the_timeout_fails_the_run_and_ends_an_in_process_sweep():
    from loaderbench.active import ACTIVE
    from tests.user_datasets import Blocks

    Blocks.release.clear()
    cfg = compose_config(
        [*TINY, *USER[:-1], "dataset.target=tests.user_datasets.Blocks", "dataset.val_size=8"]
        + ["loader.backend=threads", "loader.num_workers=1", "loader.timeout=0.3"]
        + ["bench.mode=loader_only"]
    )
    tracker, sweep = tracking.InMemoryTracker(), _Sweep()
    ACTIVE.register(sweep)
    try:
        with pytest.raises(StuckLoader, match="1 loader thread"):
            run(cfg, tracker=tracker, launch=Launch(multirun=True))
    finally:
        ACTIVE.unregister(sweep)
        Blocks.release.set()  # let the stuck thread go: the test process goes on
    assert tracker.status == "FAILED"
    assert "took longer than loader.timeout=0.3 s" in tracker.texts["error.txt"]
    for t in loader_threads():
        t.join(5)
    assert not loader_threads()


def test_a_stall_in_a_single_run_is_todays_stall_message():
    from tests.user_datasets import Blocks

    Blocks.release.clear()
    cfg = compose_config(
        [*TINY, *USER[:-1], "dataset.target=tests.user_datasets.Blocks", "dataset.val_size=8"]
        + ["loader.backend=threads", "loader.num_workers=2", "loader.timeout=0.3"]
    )
    try:
        with pytest.raises(LoaderFailure, match=r"after 0 batches had arrived\) took longer"):
            run(cfg, tracker=tracking.InMemoryTracker(), launch=Launch())
    finally:
        Blocks.release.set()
    for t in loader_threads():
        t.join(5)
