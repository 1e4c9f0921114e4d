"""Config checks shared by the dataset options.

Every error is a :class:`~loaderbench.config.ConfigError` that names the key, the value, the
reason and the fix (``dataset.size=-5: must be a whole number at least 1; e.g.
dataset.size=4096``). Raised inside a Hydra ``_target_``, it reaches the user as one line and
exit status 2 (``experiment`` unwraps it from Hydra's InstantiationException).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from loaderbench.config import ConfigError


def fail(key: str, value: Any, why: str, fix: str) -> ConfigError:
    """``dataset.<key>=<value>: <why>; <fix>``."""
    return ConfigError(f"dataset.{key}={value}: {why}; {fix}")


def check_count(
    key: str, value: Any, *, least: int, most: int | None = None, example: int, note: str = ""
) -> None:
    """``value`` must be an int in ``least..most`` (``most=None``: no upper bound)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if whole and value >= least and (most is None or value <= most):
        return
    span = f"from {least} to {most}" if most is not None else f"at least {least}"
    raise fail(key, value, f"must be a whole number {span}{note}", f"e.g. dataset.{key}={example}")


def check_choice(key: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise fail(
            key, value, f"choose one of {', '.join(choices)}", f"e.g. dataset.{key}={choices[0]}"
        )


def check_sizes(
    *,
    size: Any,
    val_size: Any,
    image_size: Any,
    num_classes: Any,
    min_image_size: int = 1,
    max_classes: int | None = None,
    classes_note: str = "",
) -> None:
    """The sizes every generated dataset takes (shapes, tensor, fake)."""
    check_count("size", size, least=1, example=4096)
    check_count("val_size", val_size, least=1, example=1024)
    check_count("image_size", image_size, least=min_image_size, example=64)
    check_count(
        "num_classes", num_classes, least=2, most=max_classes, example=min(10, max_classes or 10),
        note=classes_note,
    )  # fmt: skip


def check_storage(read_latency_ms: Any, cold_cache: Any) -> None:
    """The emulated storage of the datasets read from files: a latency in ms, a cold cache."""
    number = isinstance(read_latency_ms, (int, float)) and not isinstance(read_latency_ms, bool)
    if not (number and read_latency_ms >= 0):
        why = "must be 0 or more milliseconds"
        raise fail("read_latency_ms", read_latency_ms, why, "e.g. dataset.read_latency_ms=0")
    if cold_cache and not hasattr(os, "posix_fadvise"):
        raise ConfigError(
            "dataset.cold_cache=true needs os.posix_fadvise, which this platform lacks (it is "
            "Linux's); pass dataset.cold_cache=false"
        )
