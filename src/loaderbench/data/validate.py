"""Checks of the ``dataset.*`` values that the dataset options share.

Every error is a :class:`~loaderbench.config.ConfigError` that names the key, the value, the
reason and the fix (``dataset.size=-5: must be a whole number at least 1; e.g.
dataset.size=4096``). Raised inside a Hydra ``_target_``, it reaches the user as one line and
exit status 2 (``experiment`` unwraps it from Hydra's InstantiationException).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loaderbench.config import ConfigError


def fail(key: str, value: Any, why: str, fix: str) -> ConfigError:
    """``dataset.<key>=<value>: <why>; <fix>``."""
    return ConfigError(f"dataset.{key}={value}: {why}; {fix}")


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (YAML's ``true`` is an int to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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


def check_fraction(value: Any) -> None:
    """``dataset.val_fraction`` is strictly between 0 and 1."""
    if not (is_number(value) and 0.0 < value < 1.0):
        why = "must be a number between 0 and 1"
        raise fail("val_fraction", value, why, "e.g. dataset.val_fraction=0.2")


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
