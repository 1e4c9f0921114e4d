"""Image folders that fight back: a symbolic link loop, a folder that cannot be read, a file name
that is not UTF-8. The unreadable folder needs an unprivileged user (tests run as root, and
root reads everything): test_imagefolder_faults_e2e's, slow."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loaderbench.config import ConfigError
from loaderbench.data.imagefolder import make_imagefolder
from loaderbench.data.imagefolder.scan import printable
from tests.helpers import compose_config, run_in_memory

NOT_UTF8 = os.fsdecode(b"caf\xe9-\xff.jpg")  # Latin-1 bytes: what an old camera or zip writes


def image_folder(root: Path, n: int = 4, classes=("a", "b"), name=lambda i: f"{i}.jpg") -> Path:
    """root/<class>/<name(i)> for i < n: tiny JPEGs."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / name(i), "JPEG")
    return root


@pytest.mark.parametrize("kind", ["to itself", "to a folder above"])
def test_a_symlink_loop_is_named_in_one_line_or_skipped_and_counted(tmp_path, kind):
    root = image_folder(tmp_path / "imgs")
    loop = root / "a" / "loop"
    loop.symlink_to("loop" if kind == "to itself" else "..")
    with pytest.raises(ConfigError) as err:
        make_imagefolder(root=str(root))
    line = str(err.value)
    assert line.startswith(f"{loop}: a symbolic link loop") and "\n" not in line
    assert "dataset.on_error=skip" in line
    pair = make_imagefolder(root=str(root), on_error="skip")
    assert pair.stats["skipped_dirs"] == 1
    assert len(pair.train) + len(pair.val) == 8  # every real image, each once


def test_a_root_that_is_a_dangling_link_says_so(tmp_path):
    (tmp_path / "imgs").symlink_to(tmp_path / "imgs")
    with pytest.raises(ConfigError, match="is a symbolic link that leads nowhere"):
        make_imagefolder(root=str(tmp_path / "imgs"))


def test_printable_escapes_the_bytes_of_a_name_that_is_not_utf8():
    assert printable(f"/data/{NOT_UTF8}") == "/data/caf\\xe9-\\xff.jpg"
    assert printable("/data/café.jpg") == "/data/café.jpg"  # valid UTF-8 stays as it is


def test_a_file_name_that_is_not_utf8_trains_and_is_escaped_where_it_is_logged(tmp_path, caplog):
    root = image_folder(tmp_path / "imgs", name=lambda i: f"{i}-{NOT_UTF8}")
    (root / "a" / NOT_UTF8.replace(".jpg", "-bad.jpg")).write_bytes(b"not a jpeg")
    cfg = compose_config([
        "dataset=imagefolder", f"dataset.root={root}", "dataset.image_size=16",
        "dataset.on_error=skip", "dataset.val_fraction=0.25", "loader.batch_size=4",
        "trainer.epochs=1", "trainer.progress=false", "mlflow.enabled=false",
    ])  # fmt: skip
    with caplog.at_level(logging.WARNING):
        tracker = run_in_memory(cfg)
    assert tracker.last("data/skipped_files") == 1
    (skipped,) = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert "caf\\xe9-\\xff-bad.jpg" in skipped
    skipped.encode("utf-8")  # a log line any terminal or file takes
