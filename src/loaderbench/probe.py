"""How long a probe is: a tune sweep's trial cut short (``bench.probe_batches``)."""

from __future__ import annotations

import math
from typing import Any

PROBE_LEAST = 4  # batches: a probe's projection needs two halves of two steps each


def probe_length(bench: Any, epoch_batches: int) -> int | None:
    """A probe's training batches an epoch: ``bench.probe_batches``, at most
    ``bench.probe_share`` of the epoch (and at least :data:`PROBE_LEAST`); None: not a probe.
    On a 25-batch epoch a 20-batch probe would cost nearly a full run."""
    if bench.probe_batches is None:
        return None
    share = max(PROBE_LEAST, math.ceil(epoch_batches * getattr(bench, "probe_share", 1.0)))
    return min(bench.probe_batches, share)


def record_probe(plan: Any, bench: Any, epoch_batches: int) -> None:
    """A probe's length as an effective setting of ``plan`` (what its epoch really fetches),
    with the reason where the epoch's share cut ``bench.probe_batches``."""
    if (probe := probe_length(bench, epoch_batches)) is None:
        return
    plan.effective["probe_batches"] = probe
    if probe < bench.probe_batches:
        plan.reasons["probe_batches"] = (
            f"bench.probe_share={bench.probe_share} of a {epoch_batches}-batch epoch"
        )
