"""Tar shards in the WebDataset layout: a shard's index, and writing one.

A shard is a plain tar file. A sample is the run of consecutive members that share a key (the
member's name up to the first dot of its base name): ``00000042.jpg`` + ``00000042.cls``. The
image is the member ending ``.jpg``, ``.jpeg`` or ``.png``; the label is ``.cls``, a decimal
integer in text (WebDataset's convention). Other members of a sample are ignored. Shards
written by webdataset's ``ShardWriter`` (or ``tar``) read here, and those written here read
with webdataset.

:func:`scan_shard` reads a shard's headers once (seeking over the data) into a :class:`Shard`:
the offset and size of every image and every label. With that index a split's sample count is
known before any epoch, a sample can be read by its offset (``os.pread``), and a streaming
reader reads the file front to back in 1 MiB requests
(:func:`~loaderbench.data.storage.open_stream`), each of which pays the emulated storage
latency once.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from loaderbench.config import ConfigError
from loaderbench.data.decode import IMAGE_EXTENSIONS

LABEL_EXT = "cls"


@dataclass
class Shard:
    """The index of one tar shard: per sample, where its image is and its label."""

    path: str
    offsets: np.ndarray  # int64: byte offset of each sample's image data in the file
    sizes: np.ndarray  # int64: bytes of each image
    labels: np.ndarray  # int64
    exts: list[str]  # each image's extension (jpg, png, ...)
    file_bytes: int

    def __len__(self) -> int:
        return len(self.offsets)


def _split_name(name: str) -> tuple[str, str]:
    """``dir/00000042.seg.jpg`` -> (``dir/00000042``, ``seg.jpg``): WebDataset's key rule."""
    head, base = os.path.split(name)
    key, _, ext = base.partition(".")
    return os.path.join(head, key), ext.lower()


def scan_shard(path: str) -> Shard:
    """Index ``path``; a file that is not a tar of samples is a ConfigError naming it."""
    offsets, sizes, labels, exts = [], [], [], []
    key, image, label = None, None, None

    def close_sample() -> None:
        if key is None:
            return
        if image is None or label is None:
            what = "an image (.jpg, .jpeg, .png)" if image is None else "a label (.cls)"
            raise ConfigError(
                f"{path}: sample {key!r} has no {what}; each sample needs both (WebDataset "
                "layout: KEY.jpg + KEY.cls). python -m loaderbench.make_shards writes such shards"
            )
        offsets.append(image[0])
        sizes.append(image[1])
        exts.append(image[2])
        labels.append(label)

    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = _split_name(member.name)
                if k != key:
                    close_sample()
                    key, image, label = k, None, None
                if ext in IMAGE_EXTENSIONS:
                    image = (member.offset_data, member.size, ext)
                elif ext == LABEL_EXT:
                    text = tar.extractfile(member).read()
                    try:
                        label = int(text.strip())
                    except ValueError:
                        raise ConfigError(
                            f"{path}: {member.name} holds {text[:20]!r}, not a class number"
                        ) from None
            close_sample()
    except (tarfile.TarError, OSError) as exc:
        raise ConfigError(f"{path}: not a readable tar shard ({exc})") from None
    if not offsets:
        raise ConfigError(f"{path}: the shard holds no sample (KEY.jpg + KEY.cls members)")
    return Shard(
        path=path,
        offsets=np.asarray(offsets, dtype=np.int64),
        sizes=np.asarray(sizes, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64),
        exts=exts,
        file_bytes=os.path.getsize(path),
    )


def write_shard(path: str, samples: Iterable[tuple[str, bytes, str, int]]) -> int:
    """Write ``(key, image bytes, extension, label)`` samples as one tar shard; return its size.
    Members carry mtime 0 and no owner, so the same samples give the same bytes."""

    def member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o444
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, image, ext, label in samples:
            member(tar, f"{key}.{ext}", image)
            member(tar, f"{key}.{LABEL_EXT}", str(int(label)).encode())
    return os.path.getsize(path)
