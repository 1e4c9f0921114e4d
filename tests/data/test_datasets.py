"""Dataset options: image folder (decoders, bad files, fingerprint, slow and cold storage),
the in-memory tensor workload and FakeData. Images are generated into tmp_path with PIL."""

from __future__ import annotations

import ctypes
import io
import mmap
import os
import pickle
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from loaderbench import transforms
from loaderbench.config import ConfigError, LoaderConfig
from loaderbench.data import TransformedDataset, build_loader, plan_loader
from loaderbench.data.decode import DecoderWarnings, decode_pil, decode_torchvision
from loaderbench.data.fake import make_fake
from loaderbench.data.imagefolder import UnreadableImageError, make_imagefolder
from loaderbench.data.imagefolder.write import write_imagefolder
from loaderbench.data.loader import close_loader
from loaderbench.data.shapes import SHAPES, ShapesDataset
from loaderbench.data.tensor import make_tensor, tensor_bytes
from loaderbench.make_imagefolder import main as make_imagefolder_main
from tests.helpers import compose_config, load_script

# Known noise: torchvision 0.29 deprecates its decoders (a warning per call); PIL warns on
# palette alpha (tRNS), which both decoders handle.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Palette images with Transparency:UserWarning"),
]
SIZE = 16
PRESETS = (transforms.Basic, transforms.Augment, transforms.Heavy)
DECODERS = ("pil", "torchvision")


def _image(mode: str, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":  # real 16-bit values, beyond 255
        return Image.fromarray(rng.integers(0, 65536, (SIZE, SIZE), dtype=np.uint16))
    rgb = Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    if mode.startswith("P+"):  # a transparent palette index, or an alpha per entry (tRNS)
        p = rgb.convert("P")
        p.info["transparency"] = 0 if mode == "P+transparency" else bytes(range(256))
        return p
    return rgb.convert(mode)


def _save(path: Path, image: Image.Image, fmt: str = "JPEG", sync: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)
    if sync:  # clean pages: posix_fadvise cannot drop pages still waiting for writeback
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    return path


def _folder(root: Path, n: int = 3, classes: tuple[str, ...] = ("a", "b"), **kw) -> Path:
    """root/train/<class>/<i>.jpg (n per class) and root/val/<class>/0.jpg."""
    for c, name in enumerate(classes):
        for i in range(n):
            _save(root / "train" / name / f"{i}.jpg", _image("RGB", seed=10 * c + i), **kw)
        _save(root / "val" / name / "0.jpg", _image("RGB", seed=100 + c), **kw)
    return root


# --- decoders × image modes -----------------------------------------------------------------

MODES = [("JPEG", m) for m in ("L", "RGB", "CMYK")] + [
    ("PNG", m) for m in ("L", "P", "P+transparency", "P+tRNS", "LA", "RGBA", "RGB", "I;16")
]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(("fmt", "mode"), MODES, ids=[f"{f}-{m}" for f, m in MODES])
def test_every_mode_decodes_to_rgb_uint8_and_goes_through_the_presets(tmp_path, decoder, fmt, mode):
    ext = ".jpg" if fmt == "JPEG" else ".png"
    for split in ("train", "val"):
        for name in ("a", "b"):
            _save(tmp_path / split / name / f"x{ext}", _image(mode), fmt)
    pair = make_imagefolder(root=str(tmp_path), decoder=decoder, image_size=SIZE)
    image, label = pair.train[0]
    assert (image.dtype, tuple(image.shape), label) == (torch.uint8, (3, SIZE, SIZE), 0)

    path = tmp_path / "train" / "a" / f"x{ext}"
    if mode != "I;16":  # PIL's own convert("RGB") is the reference for 8-bit modes
        reference = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(image.numpy(), reference)
    data = path.read_bytes()
    assert torch.equal(decode_pil(data), decode_torchvision(data))  # the decoders agree
    for preset in PRESETS:
        p = preset(image_size=8)
        for pipeline in (p.train, p.val):
            out = pipeline(image)
            assert (out.dtype, tuple(out.shape)) == (torch.float32, (3, 8, 8))


def test_sixteen_bit_png_keeps_the_high_byte(tmp_path):
    path = _save(tmp_path / "x.png", _image("I;16"), "PNG")
    high = (np.asarray(Image.open(path)) >> 8).astype(np.uint8)
    image = decode_pil(path.read_bytes())
    assert all(np.array_equal(image[c].numpy(), high) for c in range(3))


# --- bad input ------------------------------------------------------------------------------


def _corrupt(data: bytes, marker: bytes, offset: int) -> bytes:
    out = bytearray(data)
    i = out.index(marker) + offset
    out[i : i + 20] = b"\xff" * 20  # JPEG: garbled Huffman table; PNG: broken zlib stream
    return bytes(out)


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    _image("RGB", seed=7).save(buffer, fmt)
    return buffer.getvalue()


BAD_FILES = {
    "corrupt-jpeg": ("bad.jpg", lambda: _corrupt(_encoded("JPEG"), b"\xff\xc4", 4)),
    "corrupt-png": ("bad.png", lambda: _corrupt(_encoded("PNG"), b"IDAT", 4)),
    # A truncated JPEG passes Image.verify(): only a decode finds it.
    "truncated-jpeg": ("bad.jpg", lambda: _encoded("JPEG")[: len(_encoded("JPEG")) * 9 // 10]),
    "truncated-png": ("bad.png", lambda: _encoded("PNG")[: len(_encoded("PNG")) * 6 // 10]),
    "not-an-image": ("bad.JPG", lambda: b"name,label\nx,1\n"),
    "empty-file": ("bad.jpeg", lambda: b""),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_an_undecodable_file_is_a_config_error_naming_it(tmp_path, kind):
    name, make = BAD_FILES[kind]
    bad = tmp_path / "train" / "b" / name
    _folder(tmp_path).joinpath("train", "b", name).write_bytes(make())
    with pytest.raises(ConfigError, match="cannot be decoded") as err:
        make_imagefolder(root=str(tmp_path))
    assert str(bad) in str(err.value) and "dataset.on_error=skip" in str(err.value)


@pytest.mark.parametrize("decoder", DECODERS)
def test_skip_leaves_bad_files_out_and_counts_them(tmp_path, decoder):
    _folder(tmp_path)
    for i, (name, make) in enumerate(BAD_FILES.values()):
        (tmp_path / ("train" if i % 2 else "val") / "a" / f"{i}-{name}").write_bytes(make())
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image extension: ignored")
    pair = make_imagefolder(root=str(tmp_path), decoder=decoder, on_error="skip")
    assert pair.stats["skipped_files"] == len(BAD_FILES)
    assert pair.stats["ignored_files"] == 1
    assert (len(pair.train), len(pair.val)) == (6, 2)
    # Every remaining file decodes (torchvision never sees the corrupt PNG that crashes libpng).
    assert all(pair.train[i][0].shape == (3, SIZE, SIZE) for i in range(len(pair.train)))


def test_an_empty_class_folder_is_an_error_or_a_dropped_class(tmp_path):
    empty = _folder(tmp_path) / "train" / "c"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ConfigError, match="no image") as err:
        make_imagefolder(root=str(tmp_path))
    assert str(empty) in str(err.value)
    pair = make_imagefolder(root=str(tmp_path), on_error="skip")
    stats = pair.stats
    assert (pair.num_classes, stats["empty_classes"], stats["dropped_classes"]) == (2, 1, 1)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_missing_root_is_a_config_error_naming_it(tmp_path, on_error):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="does not exist") as err:
        make_imagefolder(root=str(missing), on_error=on_error)
    assert str(missing) in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        (dict(root="???"), "dataset.root is required"),
        (dict(decoder="opencv"), "dataset.decoder=opencv"),
        (dict(on_error="ignore"), "dataset.on_error=ignore"),
        (dict(val_fraction=1.0), "dataset.val_fraction=1.0"),
        (dict(read_latency_ms=-1), "dataset.read_latency_ms=-1"),
        (dict(verify="none", on_error="skip"), "dataset.on_error=skip"),
        (dict(num_classes=5), "dataset.num_classes=5"),
    ],
)
def test_wrong_values_name_the_key(tmp_path, kwargs, key):
    kwargs = {"root": str(_folder(tmp_path)), **kwargs}
    with pytest.raises(ConfigError, match=key.replace("?", r"\?")):
        make_imagefolder(**kwargs)


def test_a_file_broken_after_the_build_raises_naming_it(tmp_path):
    pair = make_imagefolder(root=str(_folder(tmp_path)))
    Path(pair.train.path(0)).write_bytes(b"overwritten")
    with pytest.raises(UnreadableImageError, match="cannot read") as err:
        pair.train[0]
    assert pair.train.path(0) in str(err.value)


@pytest.mark.parametrize("verify", ["header", "none"])
def test_without_a_decode_check_a_truncated_jpeg_fails_at_read_time(tmp_path, verify):
    bad = _folder(tmp_path) / "train" / "a" / "z.jpg"
    bad.write_bytes(BAD_FILES["truncated-jpeg"][1]())  # passes Image.verify()
    pair = make_imagefolder(root=str(tmp_path), verify=verify, decoder="torchvision")
    index = [pair.train.path(i) for i in range(len(pair.train))].index(str(bad))
    with pytest.raises(UnreadableImageError, match="dataset.verify=decode") as err:
        pair.train[index]
    assert str(bad) in str(err.value)


# --- layout, split, fingerprint -------------------------------------------------------------


def test_a_flat_folder_is_split_per_class_by_seed(tmp_path):
    for name, n in (("cat", 10), ("dog", 5)):
        for i in range(n):
            _save(tmp_path / name / f"{i}.jpg", _image("RGB", seed=i))
    pair = make_imagefolder(root=str(tmp_path), val_fraction=0.2, seed=1)
    val_labels = sorted(int(x) for x in pair.val.labels)
    assert (len(pair.train), val_labels) == (12, [0, 0, 1])  # 2 of 10 cats, 1 of 5 dogs
    again = make_imagefolder(root=str(tmp_path), val_fraction=0.2, seed=1)
    assert list(again.val.files) == list(pair.val.files)
    other = make_imagefolder(root=str(tmp_path), val_fraction=0.2, seed=2)
    assert other.fingerprint != pair.fingerprint  # the seed chose other files
    assert not set(pair.train.files) & set(pair.val.files)


def test_the_fingerprint_follows_the_files(tmp_path):
    root = str(_folder(tmp_path))
    first = make_imagefolder(root=root).fingerprint
    assert make_imagefolder(root=root).fingerprint == first
    assert make_imagefolder(root=root, seed=5, decoder="torchvision").fingerprint == first
    with open(tmp_path / "train" / "a" / "0.jpg", "ab") as f:
        f.write(b"\0")  # one byte longer (and still a valid JPEG)
    grown = make_imagefolder(root=root).fingerprint
    assert grown != first
    _save(tmp_path / "train" / "b" / "new.png", _image("RGB", seed=99), "PNG")
    assert make_imagefolder(root=root).fingerprint not in (first, grown)


def test_the_dataset_pickles_small(tmp_path):
    pair = make_imagefolder(root=str(_folder(tmp_path, n=20)))
    blob = pickle.dumps(pair.train)
    assert len(blob) < 2000  # paths and labels, no pixels
    clone = pickle.loads(blob)
    assert torch.equal(clone[5][0], pair.train[5][0])


# --- slow and cold storage ------------------------------------------------------------------


def test_read_latency_delays_each_read(tmp_path):
    pair = make_imagefolder(root=str(_folder(tmp_path)), read_latency_ms=60)
    t0 = time.perf_counter()
    pair.train[0]
    assert time.perf_counter() - t0 >= 0.060


def _resident_pages(path: str) -> int:
    """Pages of ``path`` in the page cache (mmap + mincore(2), like util-linux's fincore)."""
    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as mm:
        view = (ctypes.c_char * len(mm)).from_buffer(mm)  # private mapping: no page is copied
        vec = (ctypes.c_ubyte * ((len(mm) + page - 1) // page))()
        rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(len(mm)), vec)
        del view  # release the buffer before the mapping closes
    assert rc == 0, os.strerror(ctypes.get_errno())
    return sum(v & 1 for v in vec)


def _fs_type(path: Path) -> str:
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fs = line.split()[:3]
        if str(path).startswith(mount) and len(mount) > len(best):
            best, kind = mount, fs
    return kind


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="posix_fadvise, mincore: Linux")
def test_cold_cache_drops_the_files_before_each_epoch(tmp_path):
    pair = make_imagefolder(root=str(_folder(tmp_path, n=4, sync=True)), cold_cache=True)
    paths = [pair.train.path(i) for i in range(len(pair.train))]
    for i in range(len(pair.train)):
        pair.train[i]  # warm
    assert all(_resident_pages(p) for p in paths)
    assert pair.train.before_epoch(0) == len(paths) == 8
    assert pair.val.before_epoch(0) == 0  # cold_cache is the train split's
    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("the page cache is the storage on tmpfs: nothing can be dropped")
    assert sum(_resident_pages(p) for p in paths) == 0


# --- the DataLoader -------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", DECODERS)
def test_workers_yield_the_same_batches_as_the_main_process(tmp_path, decoder):
    pair = make_imagefolder(root=str(_folder(tmp_path, n=12)), decoder=decoder)
    dataset = TransformedDataset(pair.train, transforms.Augment(image_size=SIZE).train, seed=3)
    runs = []
    for workers in (0, 2):
        plan = plan_loader(
            LoaderConfig(batch_size=5, num_workers=workers), device=torch.device("cpu")
        )
        loader = build_loader(dataset, plan, seed=3)
        loader.sampler.set_epoch(1)
        try:
            runs.append(list(loader))
        finally:
            close_loader(loader)
    assert len(runs[0]) == len(runs[1]) == 5
    for (x0, y0, i0), (x2, y2, i2) in zip(*runs, strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2) and torch.equal(i0, i2)


# --- writing an image folder ----------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_write_imagefolder_writes_the_shapes_pixels(tmp_path, workers):
    kw = dict(image_size=SIZE, num_classes=3, seed=4)
    summary = write_imagefolder(
        str(tmp_path), count=20, val_count=6, image_format="png", workers=workers, **kw
    )
    assert summary.files == {"train": 20, "val": 6} and summary.bytes > 0
    pair = make_imagefolder(root=str(tmp_path), image_size=SIZE)
    assert (len(pair.train), len(pair.val)) == (20, 6)
    shapes = ShapesDataset(size=20, split="train", **kw)
    for i in range(len(pair.train)):
        index = int(Path(pair.train.path(i)).stem)  # files are named by the shapes index
        expected, label = shapes[index]
        assert torch.equal(pair.train[i][0], expected)  # PNG: lossless
        assert Path(pair.train.path(i)).parent.name == SHAPES[label]
    assert set(summary.classes) <= set(SHAPES[:3])
    with pytest.raises(FileExistsError):
        write_imagefolder(str(tmp_path), count=2, val_count=1, **kw)


# --- in-memory tensors and FakeData ---------------------------------------------------------


def test_the_tensor_memory_guard_refuses_before_allocating(monkeypatch):
    available = 23.1e9
    monkeypatch.setattr(
        "loaderbench.data.tensor.memory.psutil.virtual_memory",
        lambda: SimpleNamespace(available=available),
    )

    def no_allocation(*args, **kwargs):
        raise AssertionError("allocated before checking the memory")

    monkeypatch.setattr(torch, "empty", no_allocation)
    monkeypatch.setattr(torch, "randn", no_allocation)
    with pytest.raises(ConfigError) as err:
        make_tensor(size=100_000, val_size=1000, image_size=224, seed=0)
    message = str(err.value)
    need = tensor_bytes(101_000, 224) / 1e9
    most = int(available * 0.8) // tensor_bytes(1, 224) - 1000
    for part in (
        "dataset.size=100000",
        "3×224×224 float32",
        f"{need:.1f} GB",
        "23.1 GB is available",
        f"at most ~{most}",
        "dataset.image_size",
        "pass dataset.storage=mmap",  # the fix that keeps the size: read it from a file
    ):
        assert part in message, (part, message)


def test_tensor_images_are_seeded_learnable_and_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    pair = make_tensor(size=200, val_size=100, image_size=8, num_classes=4, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    again = make_tensor(size=200, val_size=100, image_size=8, num_classes=4, seed=1)
    assert torch.equal(pair.train.tensors[0], again.train.tensors[0])
    assert pair.fingerprint == again.fingerprint
    assert make_tensor(size=200, val_size=100, image_size=8, num_classes=4, seed=2).fingerprint != (
        pair.fingerprint
    )
    # Nearest class mean over channel means: far above chance (0.25).
    (xt, yt), (xv, yv) = pair.train.tensors, pair.val.tensors
    means = torch.stack([xt[yt == c].mean(dim=(0, 2, 3)) for c in range(4)])
    guess = torch.cdist(xv.mean(dim=(2, 3)), means).argmin(dim=1)
    assert (guess == yv).float().mean() > 0.8
    # transforms=basic on float tensors: ToDtype(float) is a no-op, Normalize applies.
    image, _ = pair.train[0]
    out = transforms.Basic(image_size=8).train(image)
    mean = torch.tensor(transforms.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(transforms.IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(out, (image - mean) / std, atol=1e-6)


def test_fake_data_gives_pil_images_with_distinct_splits():
    state = torch.get_rng_state()
    pair = make_fake(size=8, val_size=4, image_size=SIZE, num_classes=3, seed=0)
    image, label = pair.train[0]
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(image, Image.Image) and image.mode == "RGB" and 0 <= label < 3
    assert np.array_equal(
        np.asarray(image),
        np.asarray(
            make_fake(size=8, val_size=4, image_size=SIZE, num_classes=3, seed=0).train[0][0]
        ),
    )
    assert not np.array_equal(np.asarray(image), np.asarray(pair.val[0][0]))
    for preset in PRESETS:
        assert preset(image_size=8).train(image).shape == (3, 8, 8)


# --- the config options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        ["dataset=tensor", "dataset.size=64", "dataset.val_size=16", "dataset.image_size=8"],
        ["dataset=fake", "dataset.size=64", "dataset.val_size=16"],
        ["dataset=imagefolder", "dataset.root=ROOT"],
        ["dataset=imagefolder", "dataset.root=ROOT", "dataset.decoder=torchvision"],
    ],
)
def test_each_option_composes_and_instantiates(tmp_path, overrides):
    from loaderbench.job import instantiate_dataset as _instantiate_dataset

    root = _folder(tmp_path)
    cfg = compose_config([o.replace("ROOT", str(root)) for o in overrides])
    for key in ("name", "image_size", "num_classes", "seed"):
        assert key in cfg.dataset
    pair = _instantiate_dataset(cfg)
    assert len(pair.train) > 0 and len(pair.val) > 0 and pair.fingerprint
    if cfg.dataset.num_classes is not None:
        assert pair.num_classes == cfg.dataset.num_classes


BAD_VALUES = [
    (["dataset.size=-5"], "dataset.size=-5"),
    (["dataset.val_size=0"], "dataset.val_size=0"),
    (["dataset.image_size=4"], "dataset.image_size=4"),
    (["dataset.num_classes=11"], "dataset.num_classes=11"),
    (["dataset.num_classes=1"], "dataset.num_classes=1"),
    (["dataset.size=many"], "dataset.size=many"),
    (["dataset=tensor", "dataset.size=-5"], "dataset.size=-5"),
    (["dataset=tensor", "dataset.image_size=0"], "dataset.image_size=0"),
    (["dataset=tensor", "dataset.num_classes=1"], "dataset.num_classes=1"),
    (["dataset=fake", "dataset.val_size=-1"], "dataset.val_size=-1"),
    (["dataset=fake", "dataset.num_classes=0"], "dataset.num_classes=0"),
    (["dataset=imagefolder", "dataset.root=ROOT", "dataset.image_size=0"], "dataset.image_size=0"),
    (
        ["dataset=imagefolder", "dataset.root=ROOT", "dataset.num_classes=0"],
        "dataset.num_classes=0",
    ),
    (
        ["dataset=imagefolder", "dataset.root=ROOT", "dataset.val_fraction=x"],
        "dataset.val_fraction=x",
    ),
    (["dataset=imagefolder", "dataset.root=ROOT", "dataset.verify=full"], "dataset.verify=full"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_a_bad_dataset_value_is_a_config_error_naming_the_key_and_fix(tmp_path, overrides, key):
    from loaderbench.job import instantiate_dataset as _instantiate_dataset

    root = _folder(tmp_path)
    cfg = compose_config([o.replace("ROOT", str(root)) for o in overrides])
    with pytest.raises(ConfigError) as err:  # unwrapped from Hydra's InstantiationException
        _instantiate_dataset(cfg)
    message = str(err.value)
    assert message.startswith(f"{key}: ") and f"e.g. {key.split('=')[0]}=" in message


def test_the_shapes_dataset_names_the_split_size_key():
    with pytest.raises(
        ConfigError, match=r"^dataset.val_size=0: must be a whole number at least 1"
    ):
        ShapesDataset(size=0, image_size=16, num_classes=3, seed=0, split="val")


# --- real photos: decoder warnings, classes with nothing readable ---------------------------


def _bad_iccp_png(path: Path) -> Path:
    """A PNG whose iCCP chunk holds a profile libpng refuses ("libpng warning: iCCP: too
    short"); PIL reads it silently, the pixels are fine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _image("RGB", seed=3).save(path, "PNG", icc_profile=b"not an ICC profile" * 4)
    return path


def test_libpng_warnings_are_silenced_and_counted(tmp_path, capfd):
    write_imagefolder(str(tmp_path), count=6, val_count=2, image_size=SIZE, num_classes=2, image_format="png", workers=1)  # fmt: skip
    bad = _bad_iccp_png(tmp_path / "train" / "extra" / "iccp.png")
    data = bad.read_bytes()
    decode_torchvision(data)  # the warning is real and deterministic here
    assert "libpng warning: iCCP" in capfd.readouterr().err
    counter = DecoderWarnings()
    with counter.quiet(native=True):
        decode_torchvision(data)
        os.write(2, b"not a decoder line\n")  # other output on fd 2 passes through
    assert counter.count == 1 and "iCCP" in counter.first
    assert capfd.readouterr().err == "not a decoder line\n"
    (tmp_path / "val" / "extra").mkdir()
    _bad_iccp_png(tmp_path / "val" / "extra" / "iccp.png")
    pair = make_imagefolder(root=str(tmp_path), decoder="torchvision", image_size=SIZE)
    for _ in range(2):  # two epochs
        for i in range(len(pair.train)):
            pair.train[i]
    assert "libpng" not in capfd.readouterr().err
    assert pair.train.warnings.count == 2  # once per read of the file, shown never


def test_pil_warnings_at_the_check_are_counted_once(tmp_path, monkeypatch, caplog):
    """PIL's DecompressionBombWarning stands in for a PIL warning on every file: the check
    counts it per file into one stat and one log line; reads show none."""
    write_imagefolder(str(tmp_path), count=6, val_count=3, image_size=SIZE, num_classes=2, image_format="png", workers=1)  # fmt: skip
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", SIZE * SIZE * 3 // 4)  # warns, not refuses
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes fails the test
        with caplog.at_level("INFO", logger="loaderbench"):
            pair = make_imagefolder(root=str(tmp_path), image_size=SIZE)
            for i in range(len(pair.train)):
                pair.train[i]
    assert pair.stats["decoder_warnings"] == 9
    lines = [r.getMessage() for r in caplog.records if "decoder warning" in r.getMessage()]
    assert len(lines) == 2 and "silenced 9" in lines[0]  # the check's count, the reader's one


def test_a_class_with_no_readable_image_is_dropped_and_the_rest_relabelled(tmp_path, caplog):
    write_imagefolder(str(tmp_path), count=30, val_count=10, image_size=SIZE, num_classes=3, image_format="png", workers=1)  # fmt: skip
    names = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert len(names) == 3
    for split in ("train", "val"):  # the first class: every file unreadable
        for f in (tmp_path / split / names[0]).iterdir():
            f.write_bytes(b"broken")
    with caplog.at_level("WARNING", logger="loaderbench"):
        pair = make_imagefolder(root=str(tmp_path), on_error="skip", image_size=SIZE)
    assert pair.num_classes == 2 and pair.train.classes == tuple(names[1:])
    assert pair.stats["dropped_classes"] == 1
    assert any(names[0] in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)
    for split in (pair.train, pair.val):
        assert set(split.labels.tolist()) == {0, 1}
        for i in range(len(split)):
            assert Path(split.path(i)).parent.name == names[1 + int(split.labels[i])]
    with pytest.raises(ConfigError, match="cannot be decoded"):
        make_imagefolder(root=str(tmp_path))


def test_make_imagefolder_command_writes_a_folder_the_dataset_reads(tmp_path, capsys):
    script = load_script("make_imagefolder")
    assert script.main is make_imagefolder_main  # python -m loaderbench.make_imagefolder
    out = tmp_path / "images"
    argv = ["--out", str(out), "--count", "12", "--val-count", "6", "--image-size", "16",
            "--classes", "3", "--workers", "1"]  # fmt: skip
    assert script.main(argv) == 0
    assert "wrote 18 JPEG images (12 train, 6 val" in capsys.readouterr().out
    pair = make_imagefolder(root=str(out))
    assert (len(pair.train), len(pair.val)) == (12, 6)
    assert script.main(["--out", str(out), "--count", "4"]) == 2  # exists: refused
    assert "--force replaces it" in capsys.readouterr().err
