"""Tar shards streamed by worker processes: exactly-once delivery counted on every epoch, an order
that does not depend on num_workers, the classic duplicate bug on purpose, and clear errors."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from loaderbench import keys, tracking
from loaderbench.config import ConfigError, LoaderConfig
from loaderbench.data import TransformedDataset, plan_loader
from loaderbench.data.loader import build_loader, close_loader, set_epoch
from loaderbench.data.shards import make_shards
from loaderbench.data.storage import open_stream
from tests.helpers import SMALL, compose_config, load_script, run_in_memory

SIZE = 96  # 5 shards: 4 of 20 samples and a short one of 16
TINY_SHARDS = dict(size=SIZE, val_size=24, image_size=16, per_shard=20, shuffle_buffer=8, seed=0)
RUN = [
    "dataset=shards",
    f"dataset.size={SIZE}",
    "dataset.val_size=24",
    "dataset.image_size=16",
    "dataset.per_shard=20",
    "dataset.streams=4",
    "loader.batch_size=16",
    "trainer.epochs=2",
]
HISTORIES = (keys.LOSS_TRAIN, keys.ACC_VAL)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def record(small_cfg, cache: Path, *overrides: str) -> tracking.InMemoryTracker:
    return run_in_memory(small_cfg(*RUN, f"dataset.cache_dir={cache}", *overrides))


@pytest.fixture(scope="module")
def reference(cache) -> tracking.InMemoryTracker:
    """num_workers=0: the run every other worker count must match."""
    return record(lambda *o: compose_config([*SMALL, "mlflow.enabled=false", *o]), cache)


def per_epoch(tracker: tracking.InMemoryTracker, key: str) -> list[float]:
    return [value for _, value in tracker.metrics[key]]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_sample_arrives_exactly_once_and_training_does_not_depend_on_workers(
    small_cfg, cache, reference, workers
):
    tracker = record(small_cfg, cache, f"loader.num_workers={workers}") if workers else reference
    assert per_epoch(tracker, keys.SAMPLES_SEEN) == [SIZE, SIZE]
    assert per_epoch(tracker, keys.DUPLICATE_SAMPLES) == [0, 0]
    assert per_epoch(tracker, keys.MISSING_SAMPLES) == [0, 0]
    assert tracker.tags[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK
    assert tracker.last(keys.IDLE_WORKERS) == 0
    for key in HISTORIES:  # bit-identical, whatever the worker count
        assert tracker.metrics[key] == reference.metrics[key]


def test_shards_not_split_by_worker_deliver_every_sample_twice(small_cfg, cache):
    tracker = record(
        small_cfg,
        cache,
        "loader.num_workers=2",
        "dataset.split_by_worker=false",
        "bench.mode=loader_only",
    )
    assert per_epoch(tracker, keys.SAMPLES_SEEN) == [2 * SIZE, 2 * SIZE]
    assert per_epoch(tracker, keys.DUPLICATE_SAMPLES) == [SIZE, SIZE]
    assert per_epoch(tracker, keys.MISSING_SAMPLES) == [0, 0]
    tag = tracker.tags[keys.EXACTLY_ONCE_TAG]
    assert tag.startswith(f"epoch 0: {2 * SIZE} samples arrived where {SIZE} were due"), tag


def test_drop_last_drops_each_streams_short_batch_without_a_warning(small_cfg, cache):
    tracker = record(small_cfg, cache, "loader.drop_last=true", "bench.mode=loader_only")
    seen = per_epoch(tracker, keys.SAMPLES_SEEN)
    assert all(0 < s < SIZE and s % 16 == 0 for s in seen), seen
    assert per_epoch(tracker, keys.MISSING_SAMPLES) == [SIZE - s for s in seen]
    assert tracker.tags[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK


def batches_by_worker(dataset, workers: int, epochs=(0, 1)) -> tuple[list, int]:
    plan = plan_loader(LoaderConfig(batch_size=8, num_workers=workers), device=torch.device("cpu"))
    loader = build_loader(dataset, plan, seed=0)
    try:
        out = []
        for epoch in epochs:
            set_epoch(loader, epoch)
            out.append([(b[0], b[2]) for b in loader])
        return out, loader.idle_workers
    finally:
        close_loader(loader)


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.parametrize(("streams", "workers", "idle"), [(3, 2, 0), (2, 3, 1)])
def test_workers_deliver_the_planned_order(cache, streams, workers, idle):
    # 3 streams on 2 workers: the DataLoader asks a worker whose stream is not next, which
    # answers with a placeholder; 2 streams on 3 workers: one worker has nothing to read.
    from loaderbench.transforms import Augment

    pair = make_shards(cache_dir=str(cache), streams=streams, **TINY_SHARDS)
    dataset = TransformedDataset(pair.train, Augment(image_size=16).train, seed=0)
    expected, _ = batches_by_worker(dataset, 0)
    got, idle_workers = batches_by_worker(dataset, workers)
    assert idle_workers == idle
    for e in range(2):
        assert sorted(torch.cat([ids for _, ids in got[e]]).tolist()) == list(range(SIZE))
        assert len(got[e]) == len(expected[e])
        for (x, i), (y, j) in zip(got[e], expected[e], strict=True):
            assert torch.equal(i, j) and torch.equal(x, y)
    assert not torch.equal(got[0][0][1], got[1][0][1])  # another epoch, another order


def test_generated_shards_are_reused_and_read_by_offset(cache):
    a = make_shards(cache_dir=str(cache), **TINY_SHARDS)
    b = make_shards(cache_dir=str(cache), **TINY_SHARDS)
    assert a.fingerprint == b.fingerprint and a.stats["shards"] == 5
    assert (len(a.train), len(a.val), a.num_classes) == (SIZE, 24, 6)
    image, label = a.train[SIZE - 1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and 0 <= label < 6
    assert len(list(cache.glob("shards-*"))) == 1  # written once, no temporary left behind


def test_a_streaming_read_pays_the_latency_once_per_mebibyte(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(bytes(5 * (1 << 19)))  # 2.5 MiB
    requests = []
    with open_stream(str(path), latency_s=0.001) as f:
        read = f.raw.readinto
        f.raw.readinto = lambda b: requests.append(len(b)) or read(b)
        for offset in range(0, 5 * (1 << 19) - 10_000, 10_000):  # skip a header, read a sample
            f.seek(offset + 512)
            f.read(9_000)
    assert len(requests) == 3, requests


def test_cold_cache_drops_the_training_shards(cache):
    pair = make_shards(cache_dir=str(cache), cold_cache=True, **TINY_SHARDS)
    assert pair.train.before_epoch(0) == 5


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"a.jpg": b"x"}, "sample 'a' has no a label"),
        ({"a.cls": b"1"}, "sample 'a' has no an image"),
        ({"a.jpg": b"x", "a.cls": b"cat"}, "not a class number"),
    ],
)
def test_a_bad_shard_is_one_error_naming_the_file(tmp_path, members, message):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        _tar(tmp_path / split / "shard-000000.tar", members)
    with pytest.raises(ConfigError, match=message) as err:
        make_shards(root=str(tmp_path))
    assert "shard-000000.tar" in str(err.value)


def test_missing_shards_name_the_folder_and_the_script(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(
        ConfigError, match=r"train has no \.tar shard.*python -m loaderbench\.make_shards"
    ):
        make_shards(root=str(tmp_path))


def test_a_size_for_your_own_shards_is_refused(tmp_path, cache):
    with pytest.raises(ConfigError, match=r"dataset\.size=10: applies to generated shards"):
        make_shards(root=str(tmp_path), size=10)
    with pytest.raises(ConfigError, match=r"dataset\.streams=0"):
        make_shards(cache_dir=str(cache), streams=0)


def test_make_shards_script_shards_an_image_folder_as_it_is(tmp_path, capsys):
    from loaderbench.data.imagefolder import make_imagefolder
    from loaderbench.data.imagefolder.write import write_imagefolder

    write_imagefolder(str(tmp_path / "images"), count=30, val_count=9, image_size=16, seed=0)
    script = load_script("make_shards")
    out = tmp_path / "shards"
    assert script.main(["--out", str(out), "--from-folder", str(tmp_path / "images"),
                        "--per-shard", "8"]) == 0  # fmt: skip
    assert "30 train" in capsys.readouterr().out
    folder = make_imagefolder(root=str(tmp_path / "images"))
    shards = make_shards(root=str(out))
    assert (len(shards.train), len(shards.val), shards.num_classes) == (30, 9, folder.num_classes)
    pixels = sorted((folder.train[i][0].sum().item(), folder.train[i][1]) for i in range(30))
    read = sorted((shards.train[i][0].sum().item(), shards.train[i][1]) for i in range(30))
    assert read == pixels  # the same decoded images under the same labels
    assert script.main(["--out", str(out), "--count", "4"]) == 2  # exists: refused
