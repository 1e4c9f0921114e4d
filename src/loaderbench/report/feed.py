"""Emulated runs (``bench.mode=emulated``): which loader settings keep the step fed, the fewest
workers that do, and the loader's ceiling as a step time. Pure, over report rows.

A *condition* is one emulated step (its time T, how it was given, ``bench.step_sync``, and any
other varied key that is not a loader setting, e.g. the batch size); a *setting* is what the
loader was set to (workers, start method, persistence, prefetch, pinning). A group is fed or
starved by :func:`loaderbench.feeding.is_fed` on its median wait per step. The answer is the
fewest-workers setting fed under every condition tried (``loaderbench.winner``: its run under
the hardest condition, or ``none``). The ceiling comes from the fastest delivery measured:
starved settings deliver at the loader's rate, a batch every T + their steady wait (the wait
alone at ``num_workers=0`` with ``step_sync=step``, where loading and the step take turns),
and ``loader_only`` runs at their steady rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loaderbench import feeding, keys
from loaderbench.naming import label
from loaderbench.report import verdict
from loaderbench.report.predict import LOADER_PROCESS_PARAMS

if TYPE_CHECKING:  # the type is only an annotation here
    from loaderbench.report.rows import Group

MODE, WORKERS = keys.MODE_PARAM, keys.WORKERS_PARAM
# What the loader (and the CPU side of the loop) was set to; the rest sets the condition.
SETTING = (*LOADER_PROCESS_PARAMS, "loader.pin_memory", keys.TORCH_THREADS_PARAM)


def step_ms(g: Group) -> float:
    try:
        return float(g.runs[0].params.get(keys.STEP_MS_EFFECTIVE, "nan"))
    except ValueError:
        return math.nan


def wait_ms(g: Group) -> float:
    return g.median(keys.SUMMARY_STEP_WAIT)


def is_fed(g: Group) -> bool | None:
    return feeding.is_fed(wait_ms(g), step_ms(g))


def sync(g: Group) -> str:
    return g.runs[0].params.get(keys.STEP_SYNC_PARAM, "step")


def setting_label(g: Group) -> str:
    """The loader setting alone, named as a run is (``w2-fork``; ``w0`` when no setting
    varied but the workers)."""
    given = dict(g.key) | {WORKERS: g.runs[0].params.get(WORKERS, "?")}
    flags = {"True": True, "False": False}  # as the store has them
    return "-".join(
        label(k, flags.get(given[k], given[k]))
        for k in SETTING
        if given.get(k, "") not in ("", "None", "null")
    )


def _name(g: Group) -> str:
    """The group's run name (without the repeat's part): the winner tag's value."""
    return g.runs[0].name if len(g.runs) == 1 else g.label.split(" (")[0]


def delivery_ms(g: Group) -> float:
    """The loader's time per batch this group shows (see the module): a starved step's period,
    T plus its steady wait (the wait alone at num_workers=0 with step_sync=step, where loading
    and the step take turns); a loader_only run's steady time per batch."""
    if g.runs[0].mode == keys.MODE_EMULATED:
        w0 = g.runs[0].params.get(WORKERS) == "0"
        return wait_ms(g) + (0.0 if w0 and sync(g) == "step" else step_ms(g))
    sps = g.median(keys.SUMMARY_STEADY)
    if not sps > 0:
        sps = g.median()
    return 1e3 * int(g.runs[0].params.get(keys.BATCH_SIZE_PARAM, "1")) / sps


@dataclass
class Condition:
    """One emulated step, and the loader settings tried under it (fewest workers first)."""

    key: tuple
    groups: list[Group]

    @property
    def step_ms(self) -> float:
        return step_ms(self.groups[0])

    @property
    def phrase(self) -> str:
        """``a 20 ms step (step_sync=step)``, with any other key that sets the condition."""
        skip = (*keys.STEP_PARAMS, keys.STEP_SYNC_PARAM, MODE, keys.PROBE_PARAM)
        other = [f"{k}={v}" for k, v in self.key if k not in skip]
        extra = "".join(f", {o}" for o in other)
        return f"a {self.step_ms:.3g} ms step (step_sync={sync(self.groups[0])}{extra})"

    @property
    def fewest(self) -> Group | None:
        return next((g for g in self.groups if is_fed(g)), None)


def conditions(groups: list[Group]) -> list[Condition]:
    """The emulated groups by condition, the hardest first (shortest T; waiting for each step
    before the one waiting for none)."""
    by: dict[tuple, list[Group]] = {}
    for g in groups:
        by.setdefault(g.without(*SETTING), []).append(g)
    out = [Condition(k, sorted(v, key=verdict.simplicity)) for k, v in by.items()]
    return sorted(out, key=lambda c: (c.step_ms, sync(c.groups[0]) != "step"))


@dataclass
class Feed:
    """What the emulated runs of a sweep say."""

    conditions: list[Condition]
    sentence: str  # the verdict
    winner: str  # WINNER_TAG: a run name, or "none"
    pick: Group | None  # what the DataLoader(...) snippet recommends
    why: str
    ceiling: str  # the loader's ceiling as a step time, or the bound, in words
    ceiling_ms: float = math.nan  # nan: every setting was fed (a bound, not a figure)
    settings: list[str] = field(default_factory=list)  # the table's columns


def _by_setting(conds: list[Condition]) -> list[list[Group]]:
    """Each setting's groups, one per condition it ran under, the hardest first."""
    by: dict[tuple, list[Group]] = {}
    for c in conds:
        for g in c.groups:
            by.setdefault(g.without(*(k for k, _ in c.key)), []).append(g)
    return list(by.values())


def _fed_everywhere(conds: list[Condition]) -> Group | None:
    """The fewest-workers setting fed under every condition (its group in the hardest)."""
    fed = [gs for gs in _by_setting(conds) if len(gs) == len(conds) and all(map(is_fed, gs))]
    return min((gs[0] for gs in fed), key=verdict.simplicity, default=None)


def _closest(conds: list[Condition]) -> Group:
    """What to paste when no setting is fed under every step: the fewest workers among those
    fed under the most steps (its group under the hardest step it keeps fed); where none is fed
    at all, the least wait under the hardest step. A slightly shorter wait of more workers is
    not a reason to pay for them: both are starved."""
    fed = [[g for g in gs if is_fed(g)] for gs in _by_setting(conds)]
    if most := max(map(len, fed)):
        return min((f[0] for f in fed if len(f) == most), key=verdict.simplicity)
    return min(conds[0].groups, key=wait_ms)


def _one(c: Condition) -> str:
    share = f"at most {feeding.FED_SHARE:.0%} of T, {feeding.FED_SHARE * c.step_ms:.3g} ms"
    if (f := c.fewest) is None:
        least = min(c.groups, key=wait_ms)
        return (
            f"No setting tried keeps {c.phrase} fed: the least wait is {setting_label(least)}'s, "
            f"{wait_ms(least):.3g} ms a step (fed needs {share})."
        )
    text = f"{setting_label(f)} is the fewest workers that keep {c.phrase} fed: it waits "
    text += f"{wait_ms(f):.3g} ms a step ({share})"
    if fewer := [g for g in c.groups if verdict.simplicity(g) < verdict.simplicity(f)]:
        s = fewer[-1]
        text += f"; {setting_label(s)} starves it ({wait_ms(s):.3g} ms a step)"
    return text + "."


def _ceiling(conds: list[Condition], loaders: list[Group]) -> tuple[str, float]:
    starved = [g for c in conds for g in c.groups if is_fed(g) is False]
    cands = [(delivery_ms(g), g) for g in [*starved, *loaders]]
    cands = [(ms, g) for ms, g in cands if math.isfinite(ms) and ms > 0]
    if not cands:
        shortest = min(c.step_ms for c in conds)
        return (
            f"Fed at every setting tried down to {shortest:.3g} ms a step: the loader's "
            f"ceiling is below that (try shorter steps, e.g. bench.step_ms={shortest / 4:.3g}).",
            math.nan,
        )
    ms, g = min(cands, key=lambda c: c[0])
    where = "loader_only" if g.runs[0].mode == "loader_only" else f"starved at {step_ms(g):.3g} ms"
    return (
        f"The loader's ceiling: a batch every {ms:.3g} ms at best ({setting_label(g)}, "
        f"{where}); a step shorter than that starves every setting tried.",
        ms,
    )


def decide(emulated: list[Group], loaders: list[Group] = ()) -> Feed:
    """The verdict over a sweep's emulated groups (``loaders``: its loader_only groups)."""
    conds = conditions(emulated)
    ceiling, ceiling_ms = _ceiling(conds, list(loaders))
    if len(conds) == 1:
        pick = conds[0].fewest
        sentence = _one(conds[0])
    else:
        parts = [f"{c.phrase}: {setting_label(c.fewest) if c.fewest else 'none'}" for c in conds]
        pick = _fed_everywhere(conds)
        head = "The fewest workers that keep the step fed, by step: " + "; ".join(parts) + "."
        tail = (
            f" Fed under every step tried: {setting_label(pick)}."
            if pick
            else " No setting tried is fed under every step."
        )
        sentence = head + tail
    winner = _name(pick) if pick else "none"
    if pick is None:  # nothing to keep the step fed: the closest setting, to paste
        pick = _closest(conds)
    phrase = next(c.phrase for c in conds if pick in c.groups)
    why = (
        f"With {setting_label(pick)} {phrase} waits {wait_ms(pick):.3g} ms a step "
        f"for data ({keys.FED if is_fed(pick) else keys.STARVED}): the step runs on the "
        "device, so the loader has the CPU to itself."
    )
    columns = list(dict.fromkeys(setting_label(g) for c in conds for g in c.groups))
    return Feed(conds, f"{sentence} {ceiling}", winner, pick, why, ceiling, ceiling_ms, columns)


def table(feed: Feed) -> tuple[list[str], list[list[str]]]:
    """(header, rows): a row per condition, a column per setting; each cell fed or starved
    with the wait per step."""
    header = ["step", "step_sync", *feed.settings]
    body = []
    for c in feed.conditions:
        cells = {setting_label(g): g for g in c.groups}
        row = [f"{c.step_ms:.3g} ms", sync(c.groups[0])]
        for s in feed.settings:
            g = cells.get(s)
            fed = None if g is None else is_fed(g)
            row.append(
                "–"
                if g is None or fed is None
                else f"{keys.FED if fed else keys.STARVED} {wait_ms(g):.3g} ms"
            )
        body.append(row)
    return header, body
