"""How long a probe is: a tune sweep's trial cut short (``bench.probe_batches``)."""

from __future__ import annotations

import math
from typing import Any

from loaderbench.data.seeding import EpochSampler

PROBE_LEAST = 4  # batches: a probe's projection needs two halves of two steps each
PROBE_STEADY = 4  # batches a probe measures between the loader's start-up burst and its tail


def probe_plan(bench: Any, epoch_batches: int, in_flight: int = 0) -> tuple[int, str] | None:
    """A probe's training batches an epoch, and why they differ from ``bench.probe_batches``
    (empty where they do not); None: not a probe.

    ``bench.probe_batches``, at most ``bench.probe_share`` of the epoch (and at least
    :data:`PROBE_LEAST`): on a 25-batch epoch a 20-batch probe would cost nearly a full run. But
    never shorter than the loader's batches in flight (``in_flight``,
    :attr:`~loaderbench.data.loader.plan.LoaderPlan.in_flight`) at each end and
    :data:`PROBE_STEADY` between them, nor longer than the epoch. An epoch starts with a burst
    (every worker filling its queue at once beside the step) and ends with a tail (the workers
    out of work, the step alone on what they prefetched); a probe cut inside either measures
    that, not the pace between (on 1,600 JPEGs, 7-batch probes put four workers at 259
    samples/s where full runs reached 433)."""
    if bench.probe_batches is None:
        return None
    batches, why = bench.probe_batches, ""
    share = max(PROBE_LEAST, math.ceil(epoch_batches * getattr(bench, "probe_share", 1.0)))
    if share < batches:
        batches = share
        why = f"bench.probe_share={bench.probe_share} of a {epoch_batches}-batch epoch"
    if 2 * in_flight + PROBE_STEADY > batches:
        batches = 2 * in_flight + PROBE_STEADY
        why = (
            f"the loader's {in_flight} batches in flight at each end (its start-up burst, its "
            f"tail) and {PROBE_STEADY} between"
        )
    if batches > epoch_batches:
        batches, why = epoch_batches, f"the whole {epoch_batches}-batch epoch: {why}"
    return batches, why


def record_probe(plan: Any, bench: Any, loader: Any) -> None:
    """A probe's length as an effective setting of ``plan`` (what its epoch really fetches),
    with the reason where it differs from ``bench.probe_batches``; then each epoch of
    ``loader`` ends after that many batches by its sampler (an
    :class:`~loaderbench.data.seeding.EpochSampler`: every map-style loader of either backend),
    so that a probe's epoch ends as a full one does, tail included. A stream has no such
    sampler: its probe stops mid-epoch instead (:func:`ends_by_sampler`)."""
    if (probe := probe_plan(bench, len(loader), plan.in_flight)) is None:
        return
    plan.effective["probe_batches"], why = probe
    if why:
        plan.reasons["probe_batches"] = why
    if isinstance(sampler := getattr(loader, "sampler", None), EpochSampler):
        sampler.limit = probe[0] * loader.batch_size


def ends_by_sampler(loader: Any) -> bool:
    """Whether a probe's epochs of ``loader`` end by its sampler, tail included
    (:func:`record_probe`), rather than stopping mid-epoch."""
    return getattr(getattr(loader, "sampler", None), "limit", None) is not None
