"""``dataset=tensor dataset.storage=mmap``: the same numbers as in memory, read through a memory
map; the path, not the pages, goes to a spawned worker; your own .npy with clear errors."""

from __future__ import annotations

import pickle
from collections import namedtuple

import numpy as np
import pytest
import torch

from loaderbench import keys, tracking
from loaderbench.config import ConfigError
from loaderbench.data.tensor import make_tensor
from loaderbench.experiment import Launch, run

KW = dict(
    size=120, val_size=40, image_size=17, num_classes=5, seed=3
)  # 3×17×17: not a multiple of 16


def test_the_mapped_tensor_holds_the_in_memory_numbers(tmp_path):
    memory = make_tensor(**KW)
    mapped = make_tensor(**KW, storage="mmap", cache_dir=str(tmp_path))
    assert mapped.fingerprint == memory.fingerprint  # the same data, so the same fingerprint
    for a, b in ((memory.train, mapped.train), (memory.val, mapped.val)):
        assert len(a) == len(b)
        for i in range(len(a)):
            assert torch.equal(a[i][0], b[i][0]) and int(a[i][1]) == b[i][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{memory.fingerprint}.labels.npy",
        f"{memory.fingerprint}.npy",
    ]  # written once, no temporary left behind
    again = make_tensor(**KW, storage="mmap", cache_dir=str(tmp_path))
    assert torch.equal(again.train[7][0], mapped.train[7][0])


def test_a_spawned_worker_gets_the_path_not_the_pages(tmp_path):
    mapped = make_tensor(**{**KW, "size": 2000}, storage="mmap", cache_dir=str(tmp_path))
    mapped.train[0]  # mapped in this process, as before forking workers
    file_bytes = mapped.stats["file_gb"] * 1e9
    assert len(pickle.dumps(mapped.train)) < file_bytes / 100


def histories(small_cfg, *overrides: str) -> tracking.InMemoryTracker:
    tracker = tracking.InMemoryTracker()
    run(
        small_cfg("dataset=tensor", "transforms=none", *overrides), tracker=tracker, launch=Launch()
    )
    assert tracker.status == "FINISHED"
    return tracker


def test_storage_changes_where_the_data_lives_not_what_is_trained(small_cfg, tmp_path):
    memory = histories(small_cfg)
    mapped = histories(
        small_cfg, "dataset.storage=mmap", f"dataset.cache_dir={tmp_path}", "loader.num_workers=2",
        "bench.memory_interval_s=0.02",  # the workers live a fraction of a second here
    )  # fmt: skip
    for key in (keys.LOSS_TRAIN, keys.ACC_VAL):
        assert mapped.metrics[key] == memory.metrics[key]
    assert mapped.tags[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK
    assert 0 < mapped.last(keys.PEAK_ANON) <= mapped.last(keys.PEAK_RSS)
    assert mapped.last(keys.WORKERS_USS) > 0


def _user_file(tmp_path, n=10, labels=True, shape=(3, 8, 8), dtype=np.uint8):
    path = tmp_path / "images.npy"
    np.save(path, np.arange(n * int(np.prod(shape)), dtype=dtype).reshape(n, *shape))
    if labels:
        np.save(tmp_path / "images.labels.npy", np.arange(n) % 3)
    return str(path)


def test_your_own_npy_gives_train_then_val_rows(tmp_path):
    path = _user_file(tmp_path)
    pair = make_tensor(
        size=6, val_size=3, image_size=8, num_classes=3, seed=0, storage="mmap", path=path
    )
    images = np.load(path)
    assert (len(pair.train), len(pair.val)) == (6, 3)
    assert np.array_equal(pair.val[0][0].numpy(), images[6]) and pair.val[0][1] == 0
    assert pair.fingerprint.startswith("npy-")


Case = namedtuple("Case", "file kwargs message")


@pytest.mark.parametrize(
    "case",
    [
        Case({"labels": False}, {}, r"dataset\.labels_path=.*images\.labels\.npy: no such file"),
        Case({"shape": (8, 8, 3)}, {}, r"dataset\.path=.*expected float32 or uint8 images N×3×H×W"),
        Case({}, {"size": 9}, r"dataset\.size=9 \+ dataset\.val_size=3 rows, but .* holds 10"),
        Case({}, {"num_classes": 2}, r"dataset\.num_classes=2, but the labels hold 2"),
        Case({}, {"storage": "memory"}, r"dataset\.path=.*: applies to dataset\.storage=mmap"),
        Case({}, {"storage": "disk"}, r"dataset\.storage=disk: choose one of memory, mmap"),
    ],
    ids=["no-labels", "channels-last", "too-few-rows", "label-too-big", "memory", "unknown"],
)
def test_a_bad_npy_or_setting_is_one_error_naming_the_key(tmp_path, case):
    path = _user_file(tmp_path, **case.file)
    kwargs = dict(size=6, val_size=3, image_size=8, num_classes=3, seed=0, storage="mmap")
    with pytest.raises(ConfigError, match=case.message):
        make_tensor(**{**kwargs, **case.kwargs}, path=path)


def test_a_full_disk_is_refused_before_writing(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(
        "loaderbench.data.storage.shutil.disk_usage", lambda _: usage(10**9, 10**9 - 5, 5)
    )
    with pytest.raises(ConfigError, match=r"dataset\.cache_dir=.*0\.0 GB is free"):
        make_tensor(**KW, storage="mmap", cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_cold_cache_drops_the_file_and_the_mapping(tmp_path):
    mapped = make_tensor(**KW, storage="mmap", cache_dir=str(tmp_path), cold_cache=True)
    first = mapped.train[0][0].clone()
    assert mapped.train.before_epoch(0) == 1
    assert torch.equal(mapped.train[0][0], first)  # read again from the file
