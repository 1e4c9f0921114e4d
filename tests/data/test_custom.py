"""dataset=custom and model=torchvision / model=custom: a user's own Dataset class and model,
run in-process with real DataLoader workers; the classic failures of user datasets, each one
clear line naming the class, the index or the attribute, and the fix."""

from __future__ import annotations

import multiprocessing

import pytest
import torch

from loaderbench import keys, tracking
from loaderbench.config import ConfigError
from loaderbench.data.custom import make_custom
from loaderbench.data.custom.samples import SampleError
from loaderbench.data.preflight import find_unpicklable
from loaderbench.experiment import run
from tests.helpers import loader_batches, run_in_memory, same_batches

USER = "tests.user_datasets"
CUSTOM = ["dataset=custom", "dataset.size=null", "dataset.val_size=null", "dataset.image_size=16"]


def custom(small_cfg, target: str, *overrides: str):
    return small_cfg(*CUSTOM, f"dataset.target={USER}.{target}", *overrides)


def test_a_user_dataset_trains_identically_with_and_without_workers(small_cfg):
    same = ("Tensors", "transforms=augment", "trainer.epochs=2")
    w0 = run_in_memory(custom(small_cfg, *same), finite=True)
    # 96 samples, 20% held out by the seed: 77 to train, 19 to validate.
    assert (w0.params["data.train_size"], w0.params["data.val_size"]) == (77, 19)
    assert w0.params["data.num_classes"] == 3  # len(Tensors.classes)
    assert w0.params["data.fingerprint"].startswith("custom-")
    # the per-sample seeding covers user datasets too: training sees the same batches
    w2 = custom(small_cfg, *same, "loader.num_workers=2", "loader.multiprocessing_context=fork")
    assert same_batches(loader_batches(w2), loader_batches(custom(small_cfg, *same)))


def test_validation_from_a_second_call_and_dict_samples(small_cfg):
    t = run_in_memory(
        custom(
            small_cfg,
            "Dicts",
            "dataset.image_key=pixels",
            "dataset.label_key=target",
            "+dataset.val_kwargs.n=30",  # the same class, called with n=30 for validation
            "dataset.size=64",  # the first 64 of 96
        ),
        finite=True,
    )
    assert (t.params["data.train_size"], t.params["data.val_size"]) == (64, 30)


def test_a_function_can_be_the_target(small_cfg):
    t = run_in_memory(
        custom(small_cfg, "tensors_split", "+dataset.val_kwargs.split=val"), finite=True
    )
    assert (t.params["data.train_size"], t.params["data.val_size"]) == (96, 48)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_iterable_dataset_runs_and_its_unused_shuffle_is_recorded(small_cfg, workers):
    t = run_in_memory(
        custom(
            small_cfg,
            "Stream",
            f"dataset.val_target={USER}.Stream",
            "+dataset.val_kwargs.offset=1000",
            "+dataset.val_kwargs.n=32",
            f"loader.num_workers={workers}",
            "transforms=augment",
        ),
        finite=True,
    )
    samples = t.last(keys.SAMPLES_PER_S) * t.last(keys.EPOCH_S)
    assert samples == pytest.approx(96)  # round-robin split between workers: each once
    assert (t.last(keys.SAMPLES_SEEN), t.last(keys.DUPLICATE_SAMPLES)) == (96, 0)
    assert t.tags[keys.EXACTLY_ONCE_TAG] == keys.EXACTLY_ONCE_OK
    assert t.params[keys.SHUFFLE_EFFECTIVE] is False
    assert "IterableDataset" in t.tags[f"{keys.SHUFFLE_EFFECTIVE}.reason"]


def test_a_stream_not_split_between_workers_is_counted_and_flagged(small_cfg):
    """A stream names no samples, so the count is what can be checked: 2 workers that each
    yield the whole stream deliver it twice."""
    t = run_in_memory(
        custom(
            small_cfg,
            "Stream",
            "+dataset.kwargs.split=false",
            f"dataset.val_target={USER}.Stream",
            "loader.num_workers=2",
        ),
        finite=True,
    )
    assert (t.last(keys.SAMPLES_SEEN), t.last(keys.DUPLICATE_SAMPLES)) == (192, 96)
    assert t.last(keys.MISSING_SAMPLES) == 0
    assert t.tags[keys.EXACTLY_ONCE_TAG] != keys.EXACTLY_ONCE_OK


def test_an_iterable_dataset_without_len_needs_a_size(small_cfg):
    cfg = custom(
        small_cfg, "Stream", "+dataset.kwargs.with_len=false", f"dataset.val_target={USER}.Stream"
    )
    with pytest.raises(
        ConfigError,
        match=r"dataset\.size=None: Stream is an IterableDataset without __len__; pass dataset\.size=N",
    ):
        run_in_memory(cfg, finite=True)


def test_an_iterable_dataset_cannot_be_split_by_fraction(small_cfg):
    with pytest.raises(
        ConfigError, match=r"dataset\.val_target=None: Stream is an IterableDataset"
    ):
        run_in_memory(custom(small_cfg, "Stream"), finite=True)


def test_an_empty_stream_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"dataset\.size=None: Stream yielded no sample; check"):
        make_custom(target=f"{USER}.Stream", kwargs={"n": 0}, val_kwargs={"n": 8}, seed=0)


def test_an_open_file_under_spawn_is_one_line_naming_the_attribute(small_cfg, tmp_path):
    path = tmp_path / "records.bin"
    path.write_bytes(b"x")
    tracker = tracking.InMemoryTracker()
    args = ["HoldsFile", f"+dataset.kwargs.path={path}", "loader.num_workers=2"]
    with pytest.raises(ConfigError) as err:
        run(custom(small_cfg, *args, "loader.multiprocessing_context=spawn"), tracker=tracker)
    line = str(err.value)
    assert "\n" not in line
    assert "HoldsFile.handle is an open file" in line and "multiprocessing_context=spawn" in line
    assert "lazily" in line  # the fix
    assert tracker.status is None  # before the run opened: nothing recorded
    # Under fork the dataset is inherited, not pickled: the same dataset runs.
    run_in_memory(custom(small_cfg, *args, "loader.multiprocessing_context=fork"), finite=True)


def test_a_lambda_under_forkserver_is_named(small_cfg):
    cfg = custom(
        small_cfg,
        "HoldsLambda",
        "loader.num_workers=1",
        "loader.multiprocessing_context=forkserver",
    )
    with pytest.raises(ConfigError, match=r"HoldsLambda\.scale is a lambda .*module level"):
        run(cfg, tracker=tracking.InMemoryTracker())


def test_find_unpicklable_walks_dicts_lists_and_attributes():
    class Holder:
        pass

    holder = Holder()
    holder.table = {"ok": [1, 2], "bad": [3, lambda: 0]}
    holder.big = torch.zeros(10)  # skipped: tensors travel through shared memory
    path, owner, value, _ = find_unpicklable({"root": holder}, "ds")
    assert path == "ds['root'].table['bad'][1]" and owner == "list[1]"
    assert callable(value)
    assert find_unpicklable({"tensor": torch.zeros(3)}, "ds") is None


def test_a_wrong_sample_in_a_worker_names_the_index_and_the_type(small_cfg):
    tracker = tracking.InMemoryTracker()
    cfg = custom(
        small_cfg, "Tensors", "+dataset.kwargs.bad_index=40", "dataset.val_fraction=0.05",
        "loader.num_workers=2", "loader.shuffle=false",
    )  # fmt: skip
    with pytest.raises(SampleError) as err:
        run(cfg, tracker=tracker)
    line = str(err.value)
    assert line.startswith("Tensors[40] returned a str as the image") and "\n" not in line
    assert "Caught SampleError in DataLoader worker" in "".join(getattr(err.value, "__notes__", []))
    assert tracker.status == "FAILED" and "Tensors[40]" in tracker.texts[keys.ERROR_ARTIFACT]
    # The traceback (still held here) must not keep the workers alive into the next job.
    assert not multiprocessing.active_children()


def test_an_exception_in_getitem_names_the_index(small_cfg):
    cfg = custom(small_cfg, "Tensors", "+dataset.kwargs.raise_at=50", "dataset.val_fraction=0.05")
    with pytest.raises(
        SampleError,
        match=r"^Tensors\[50\] raised KeyError: 'no record 50'\. Fix Tensors\.__getitem__",
    ):
        run(cfg, tracker=tracking.InMemoryTracker())


def test_the_first_sample_is_checked_before_any_run_and_labels_on_every_read():
    with pytest.raises(SampleError, match=r"^Tensors\[\d+\] returned a str as the image"):
        make_custom(target=f"{USER}.Tensors", kwargs={"bad_index": 0}, val_fraction=0.5, seed=0)
    pair = make_custom(target=f"{USER}.Tensors", num_classes=2, val_kwargs={"n": 8}, seed=0)
    with pytest.raises(
        SampleError,
        match=r"Tensors\[2\] returned label 2, outside 0\.\.1 \(num_classes=2\); set dataset\.num_classes",
    ):
        pair.train[2]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nope.Missing", r"dataset\.target=nope\.Missing: cannot import it \(ModuleNotFoundError"),
        (f"{USER}.CLASSES", r"CLASSES: is tuple, not a class or function"),
        ("builtins.object", r"gave object, which is neither a map-style dataset"),
    ],
)
def test_a_bad_target_is_one_clear_error(target, message):
    with pytest.raises(ConfigError, match=message):
        make_custom(target=target, seed=0)


def test_torchvision_resnet18_trains_on_shapes(small_cfg):
    small = ("dataset.size=64", "dataset.val_size=32")  # a ResNet-18 step is costly here
    t = run_in_memory(small_cfg("model=torchvision", "model.name=resnet18", *small), finite=True)
    assert t.params["model.name"] == "resnet18"
    assert keys.SUMMARY_VAL_ACC in t.metrics and keys.LOSS_TRAIN in t.metrics


def test_an_unknown_torchvision_name_suggests_the_close_ones(small_cfg):
    with pytest.raises(ConfigError, match=r"model\.name=resnet5: .*did you mean resnet50"):
        run(
            small_cfg("model=torchvision", "model.name=resnet5"), tracker=tracking.InMemoryTracker()
        )


def test_a_user_model_gets_classes_and_input_shape_and_unused_keys_are_recorded(small_cfg):
    # model._target_ over the default small_cnn option: its `width` is not Net's argument.
    t = run_in_memory(small_cfg(f"model._target_={USER}.Net", "+model.hidden=8"), finite=True)
    assert t.params[f"{keys.MODEL_EFFECTIVE_PREFIX}width"] is None
    assert t.tags[f"{keys.MODEL_EFFECTIVE_PREFIX}width.reason"] == "Net takes no width"
    assert t.params["model.hidden"] == 8


def test_a_model_that_does_not_return_logits_is_refused_before_the_run(small_cfg):
    tracker = tracking.InMemoryTracker()
    with pytest.raises(ConfigError, match=r"model TupleNet returns tuple; .*logits"):
        run(small_cfg("model=custom", f"model._target_={USER}.TupleNet"), tracker=tracker)
    assert tracker.status is None


def test_the_example_package_and_its_config_files_through_the_search_path(tmp_path, monkeypatch):
    from loaderbench.data.loader import close_loader
    from loaderbench.experiment import prepare
    from tests.helpers import ROOT, SMALL, compose_config

    monkeypatch.syspath_prepend(str(ROOT / "examples" / "mypkg"))
    from mypkg import make_data

    make_data.main(["--out", str(tmp_path), "--count", "40", "--val-count", "10"])
    small = [o for o in SMALL if not o.startswith("dataset.")]
    cfg = compose_config([
        *small, "mlflow.enabled=false", f"hydra.searchpath=[file://{ROOT / 'examples/mypkg/conf'}]",
        "dataset=packed_jpegs", f"dataset.kwargs.root={tmp_path}", "model=net",
    ])  # fmt: skip
    setup = prepare(cfg)
    try:
        images, labels, _ids = next(iter(setup.train_loader))
        assert images.shape[1:] == (3, 64, 64)  # dataset.image_size, via the transforms
        assert setup.model(images).shape == (len(labels), 6)  # len(PackedJpegs.classes)
        assert (len(setup.data.train), len(setup.data.val)) == (40, 10)
    finally:
        close_loader(setup.train_loader)
