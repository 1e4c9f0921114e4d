"""``dataset=tensor``'s builder: the sizes and the storage checked, then the tensors in memory
(:mod:`.memory`) or read through a memory map (:mod:`.mapped`)."""

from __future__ import annotations

from loaderbench.config import ConfigError
from loaderbench.data.pair import DatasetPair
from loaderbench.data.storage import check_storage
from loaderbench.data.tensor.mapped import make_mapped
from loaderbench.data.tensor.memory import make_in_memory
from loaderbench.data.validate import check_choice, check_sizes

STORAGE = ("memory", "mmap")


def make_tensor(
    *,
    size: int,
    val_size: int,
    image_size: int,
    num_classes: int = 10,
    seed: int,
    storage: str = "memory",
    path: str | None = None,
    labels_path: str | None = None,
    cache_dir: str = "outputs/cache",
    read_latency_ms: float = 0.0,
    cold_cache: bool = False,
) -> DatasetPair:
    """Float32 images 3×H×W and int64 labels: in-memory ``TensorDataset`` splits, or with
    ``storage=mmap`` the same numbers read through a memory map (:mod:`.mapped`).

    Generated from an explicit ``torch.Generator`` seeded by ``seed`` (the global generator,
    which initialises the model, is not touched).
    """
    check_sizes(size=size, val_size=val_size, image_size=image_size, num_classes=num_classes)
    check_choice("storage", storage, STORAGE)
    if storage == "mmap":
        check_storage(read_latency_ms, cold_cache)
        return make_mapped(
            size=size, val_size=val_size, image_size=image_size, num_classes=num_classes,
            seed=seed, path=path, labels_path=labels_path, cache_dir=cache_dir,
            options=dict(read_latency_ms=read_latency_ms, cold_cache=cold_cache),
        )  # fmt: skip
    file_only = dict(path=path, labels_path=labels_path, read_latency_ms=read_latency_ms or None)
    for key, value in (*file_only.items(), ("cold_cache", cold_cache or None)):
        if value is not None:  # a file's knob on data in RAM would be recorded but do nothing
            why = "applies to dataset.storage=mmap only"
            raise ConfigError(f"dataset.{key}={value}: {why}; pass dataset.storage=mmap too")
    return make_in_memory(
        size=size, val_size=val_size, image_size=image_size, num_classes=num_classes, seed=seed
    )
