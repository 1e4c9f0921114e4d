"""The types a sweep's report is made of: :class:`RunRow`, one child run as the store has it,
and :class:`Group`, the runs of one combination (its repeats). Every report module reads them;
they read nothing but :mod:`loaderbench.keys`.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field

from loaderbench import keys

MODE = keys.MODE_PARAM
HISTORIES = (keys.LOSS_TRAIN, keys.ACC_VAL)  # per-epoch values that must not depend on the loader


@dataclass
class RunRow:
    """One child run: what the store says, plus its error line and per-epoch histories."""

    run_id: str
    name: str
    status: str  # FINISHED, FAILED, KILLED, RUNNING
    params: dict[str, str]
    metrics: dict[str, float]
    error: str | None = None
    histories: dict[str, list[float]] = field(default_factory=dict)
    exactly_once: str | None = None  # the run's EXACTLY_ONCE_TAG: "ok", or what went wrong
    tags: dict[str, str] = field(default_factory=dict)  # the env.* tags (cores, threads)

    @property
    def delivered_wrong(self) -> bool:
        """Some epoch delivered a sample twice, or not at all."""
        return self.exactly_once not in (None, keys.EXACTLY_ONCE_OK)

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    @property
    def mode(self) -> str:
        return self.params.get(MODE, keys.MODE_TRAIN)

    @property
    def probe(self) -> bool:
        """A tuner's probe (cut epochs): ranked, never the answer."""
        return self.params.get(keys.PROBE_PARAM, "None") not in ("None", "null", "")

    def value(self, key: str) -> float:
        return self.metrics.get(key, math.nan)


@dataclass
class Group:
    """FINISHED runs identical except for ``bench.repeat`` (n=1 without repeats)."""

    key: tuple[tuple[str, str], ...]
    runs: list[RunRow]

    def values(self, key: str = keys.SUMMARY_SAMPLES_PER_S) -> list[float]:
        return [v for r in self.runs if not math.isnan(v := r.value(key))]

    def median(self, key: str = keys.SUMMARY_SAMPLES_PER_S) -> float:
        return statistics.median(vals) if (vals := self.values(key)) else math.nan

    @property
    def label(self) -> str:
        n, name = len(self.runs), self.runs[0].name
        if n == 1:
            return name
        group = "-".join(p for p in name.split("-") if not re.fullmatch(r"r\d+", p)) or name
        return f"{group} (median of {n})"

    def without(self, *params: str) -> tuple:
        return tuple(kv for kv in self.key if kv[0] not in params)
