"""``dataset=shards``: the option's builder, :func:`make_shards`.

Layout: ``root/train/*.tar`` and ``root/val/*.tar`` (sorted by name; see
:mod:`loaderbench.data.shards.tar` for a shard's insides). With ``root=null`` the shapes dataset
is written as shards once, into ``cache_dir`` (a folder named after its settings, so the same
settings reuse it and a sweep generates it once), as ``python -m loaderbench.make_shards`` writes
them.

Every shard is indexed when the dataset is built (its headers only), so a bad shard is an error
before any run is recorded, and the sample count, the ids and the fingerprint are known. A
sample's id is its position in the split (shards in name order). Training reads the shards as
streams (:mod:`loaderbench.data.shards.streams`); validation reads samples by their offset, in
order (:class:`~loaderbench.data.shards.dataset.ShardSet`).

Storage: ``read_latency_ms`` is paid once per storage request: each 1 MiB request of a
streaming read, each sample read by offset. ``cold_cache=true`` drops the training shards from
the page cache before each epoch (Linux ``posix_fadvise``).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import time
from typing import Any

from loaderbench.config import ConfigError
from loaderbench.data.decode import DECODERS
from loaderbench.data.pair import DatasetPair
from loaderbench.data.shards.dataset import ShardSet
from loaderbench.data.shards.tar import Shard, scan_shard
from loaderbench.data.shards.write import write_shards
from loaderbench.data.storage import check_storage
from loaderbench.data.validate import check_choice, check_count, check_sizes, fail

log = logging.getLogger(__name__)

GENERATED = dict(size=4096, val_size=1024, num_classes=6)  # the shapes written when root=null
SPLITS = ("train", "val")


def _validate(
    *, streams: Any, shuffle_buffer: Any, per_shard: Any, decoder: Any, read_latency_ms: Any,
    cold_cache: bool,
) -> None:  # fmt: skip
    check_count("streams", streams, least=1, example=8, note=" (shards read at once)")
    check_count("shuffle_buffer", shuffle_buffer, least=0, example=256, note=" samples")
    check_count("per_shard", per_shard, least=1, example=512, note=" samples")
    check_choice("decoder", decoder, DECODERS)
    check_storage(read_latency_ms, cold_cache)


def _generated_root(cache_dir: str, **params: Any) -> str:
    """The cache folder of the shapes written as shards with ``params``, written if absent."""
    ident = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    root = os.path.join(cache_dir, "shards-" + hashlib.sha256(ident.encode()).hexdigest()[:12])
    if os.path.isdir(root):
        return root
    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    p = dict(params)
    try:
        summary = write_shards(
            tmp, count=p.pop("size"), val_count=p.pop("val_size"), image_format="jpeg", **p
        )
    except BaseException:  # Ctrl-C or a full disk: leave no half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, root)  # atomic: a parallel job sees all of it or none
    except OSError:  # another job got there first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "wrote the shapes as %d shards (%.1f MB) to %s in %.1f s",
        sum(summary.files.values()), summary.bytes / 1e6, root, time.perf_counter() - t0,
    )  # fmt: skip
    return root


def _scan_split(root: str, split: str, given: Any) -> list[Shard]:
    folder = os.path.join(root, split)
    paths = sorted(glob.glob(os.path.join(folder, "*.tar")))
    if not paths:
        what = "has no .tar shard" if os.path.isdir(folder) else "does not exist"
        raise ConfigError(
            f"dataset.root={given}: {folder} {what}; shards go in train/ and val/ "
            "(python -m loaderbench.make_shards --out DIR writes them)"
        )
    return [scan_shard(p) for p in paths]


def make_shards(
    *,
    root: str | None = None,
    cache_dir: str = "outputs/cache",
    size: int | None = None,
    val_size: int | None = None,
    image_size: int = 64,
    num_classes: int | None = None,
    per_shard: int = 512,
    streams: int = 8,
    shuffle_buffer: int = 256,
    split_by_worker: bool = True,
    decoder: str = "pil",
    read_latency_ms: float = 0.0,
    cold_cache: bool = False,
    seed: int = 0,
) -> DatasetPair:
    """Train and val :class:`ShardSet` of the shards under ``root`` (null: the generated shapes).

    ``size``, ``val_size``, ``num_classes`` and ``per_shard`` shape the generated shards (null:
    4096, 1024, 6); with a ``root`` the shards define the sizes, and ``num_classes`` (null:
    the largest label + 1) must exceed every label. The Hydra ``_target_`` of
    ``conf/dataset/shards.yaml``."""
    _validate(
        streams=streams, shuffle_buffer=shuffle_buffer, per_shard=per_shard, decoder=decoder,
        read_latency_ms=read_latency_ms, cold_cache=cold_cache,
    )  # fmt: skip
    check_count("image_size", image_size, least=8, example=64, note=" pixels")
    if root in (None, ""):
        sizes = {k: v if v is not None else GENERATED[k] for k, v in
                 dict(size=size, val_size=val_size, num_classes=num_classes).items()}  # fmt: skip
        check_sizes(image_size=image_size, max_classes=10, **sizes)
        path = _generated_root(
            str(cache_dir), image_size=image_size, per_shard=per_shard, seed=seed, **sizes
        )
        num_classes = sizes["num_classes"]
    else:
        for key, value in (("size", size), ("val_size", val_size)):
            if value is not None:
                why = "applies to generated shards only (dataset.root=null)"
                raise fail(key, value, why, f"your shards set the size: pass dataset.{key}=null")
        path = os.path.abspath(os.path.expanduser(str(root)))
    t0 = time.perf_counter()
    split_shards = {split: _scan_split(path, split, root or path) for split in SPLITS}
    scan_s = time.perf_counter() - t0
    top = max(int(s.labels.max()) for shards in split_shards.values() for s in shards)
    if num_classes is None:
        num_classes = top + 1
    elif top >= num_classes:
        raise fail(
            "num_classes", num_classes, f"the shards hold label {top}",
            f"pass dataset.num_classes={top + 1} or null (the largest label + 1)",
        )  # fmt: skip
    stream_opts = dict(streams=streams, shuffle_buffer=shuffle_buffer)
    common = dict(decoder=decoder, read_latency_ms=read_latency_ms, **stream_opts)
    train = ShardSet(
        split_shards["train"], cold_cache=cold_cache, split_by_worker=split_by_worker, **common
    )
    val = ShardSet(split_shards["val"], **common)
    h = hashlib.sha256(b"shards\n")
    for split, shards in split_shards.items():
        for s in shards:
            h.update(f"{split}\t{os.path.basename(s.path)}\t{s.file_bytes}\t{len(s)}\n".encode())
    n_train = len(split_shards["train"])
    if streams > n_train:
        log.info(
            "%d train shards: at most %d streams (dataset.streams=%d)", n_train, n_train, streams
        )
    return DatasetPair(
        train=train,
        val=val,
        num_classes=num_classes,
        fingerprint="shards-" + h.hexdigest()[:16],
        stats={
            "shards": float(n_train),
            "shard_mb": sum(s.file_bytes for s in split_shards["train"]) / 1e6,
            "scan_s": scan_s,
        },
    )
