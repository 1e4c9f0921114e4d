"""What a sweep's runs say, as pure functions over :class:`~loaderbench.report.rows.RunRow`
lists: which params varied,
repeat groups and their medians, the verdict, the reproducibility check and the ceilings.

Nothing here reads a store or a file, so every rule can be tested on rows built in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from loaderbench import keys
from loaderbench.report import feed, predict, verdict
from loaderbench.report.rows import HISTORIES, Group, RunRow

__all__ = ["HISTORIES", "Analysis", "Group", "RunRow", "analyze"]  # rows' types, as before
MODE, REPEAT = keys.MODE_PARAM, keys.REPEAT_PARAM


@dataclass(kw_only=True)
class Analysis:
    """Everything the report says about a sweep, before any of it is rendered."""

    name: str
    rows: list[RunRow]
    varied: list[str]  # configured params that differ across the children
    groups: list[Group]
    best: Group | None  # the fastest combination
    verdict: str
    winner: str  # WINNER_TAG: the winning run's name, or "none" when within the noise
    recommendation: str  # a DataLoader(...) call to paste ("" when nothing finished)
    why: str  # one sentence: input- or compute-bound, and the workers' memory
    warnings: list[str]  # reproducibility mismatches
    reproducibility: str  # the REPRO_TAG value: identical / mismatch: ... / n/a
    ceilings: list[str]
    efficiencies: list[float] = field(default_factory=list)  # one per ceilings line
    search: dict[str, float] = field(default_factory=dict)  # a tuner's tune/* figures
    pick: Group | None = None  # what the recommendation recommends (best, or simpler in noise)
    delivery: list[str] = field(default_factory=list)  # runs not delivered exactly once
    idle: list[str] = field(default_factory=list)  # runs whose workers sat idle
    predictions: list[predict.Prediction] = field(default_factory=list)  # train, per setting
    feed: feed.Feed | None = None  # emulated runs: fed or starved, the fewest fed workers
    emulated_predictions: list[predict.EmulatedPrediction] = field(default_factory=list)

    @property
    def n_runs(self) -> int:
        return len(self.rows)

    @property
    def n_failed(self) -> int:
        return sum(r.status in ("FAILED", "KILLED") for r in self.rows)

    @property
    def best_samples_per_s(self) -> float | None:
        """The verdict's figure (the median when the best combination has repeats)."""
        return self.best.median() if self.best else None


def analyze(name: str, rows: list[RunRow], search: dict[str, float] | None = None) -> Analysis:
    """The whole analysis of a sweep called ``name`` with these children (in start order).
    A tuner's probes are listed but decide nothing: the verdict, the reproducibility check and
    the ceilings read full runs only."""
    varied = varied_params(rows)
    groups = group_repeats(rows, varied)
    full = [g for g in groups if not g.runs[0].probe]
    right = [g for g in full if not any(r.delivered_wrong for r in g.runs)]
    if (fed := feed_verdict(right)) is None:
        v = make_verdict(full)
    else:  # the table marks the fastest; the answer is the fewest workers fed
        fastest = max((g for c in fed.conditions for g in c.groups), key=Group.median)
        v = verdict.Verdict(fed.sentence, fastest, fed.winner, fed.pick, fed.why)
    warnings, repro = check_reproducibility([r for r in rows if not r.probe], varied)
    ceilings, efficiencies = find_ceilings(full)
    recommendation = verdict.snippet(v.pick.runs[0]) if v.pick else ""
    delivery, idle = data_notes(rows)
    return Analysis(
        name=name,
        rows=rows,
        varied=varied,
        groups=groups,
        best=v.best,
        verdict=v.sentence,
        winner=v.winner,
        recommendation=recommendation,
        why=v.why,
        warnings=warnings,
        reproducibility=repro,
        ceilings=ceilings,
        efficiencies=efficiencies,
        search=search or {},
        pick=v.pick,
        delivery=delivery,
        idle=idle,
        predictions=predict.predict(right),
        feed=fed,
        emulated_predictions=predict.predict_emulated(right),
    )


def feed_verdict(groups: list[Group]) -> feed.Feed | None:
    """The fed verdict where the sweep emulated a step (its loader_only runs give the ceiling
    too); None where it did not."""
    emulated = [g for g in groups if g.runs[0].mode == keys.MODE_EMULATED]
    loaders = [g for g in groups if g.runs[0].mode == "loader_only"]
    return feed.decide(emulated, loaders) if emulated else None


def varied_params(rows: list[RunRow]) -> list[str]:
    """Configured params whose values differ across the runs (``effective.*`` left out)."""
    names = sorted({k for r in rows for k in r.params if not k.startswith(keys.NOT_KNOB_PREFIXES)})
    return [k for k in names if len({r.params.get(k) for r in rows}) > 1]


def group_repeats(rows: list[RunRow], varied: list[str]) -> list[Group]:
    """FINISHED runs grouped by every varied param but ``bench.repeat``, in first-run order."""
    groups: dict[tuple, Group] = {}
    for row in (r for r in rows if r.finished):
        key = tuple((k, row.params.get(k, "")) for k in varied if k != REPEAT)
        groups.setdefault(key, Group(key, [])).runs.append(row)
    return [g for g in groups.values() if g.values()]


def make_verdict(groups: list[Group]) -> verdict.Verdict:
    """The verdict over the training combinations (all groups when none trained). A run that
    did not deliver every sample exactly once is left out: its samples/s counts repeats."""
    cands = [g for g in groups if g.runs[0].mode == keys.MODE_TRAIN] or groups
    wrong = [g for g in cands if any(r.delivered_wrong for r in g.runs)]
    cands = [g for g in cands if g not in wrong]
    if not cands:
        why = " (every run delivered samples wrongly)" if wrong else ""
        return verdict.Verdict(f"No run finished{why}, so there is no answer.", None, "none", None)
    v = verdict.decide(cands)
    if v.pick is not None:
        v.why = verdict.explain(v.pick, cands)
    if wrong:
        if len(cands) == 1:
            once = "Only one setting delivered every sample exactly once"
            v.sentence = v.sentence.replace("Only one setting ran", once, 1)
        names = ", ".join(g.label for g in wrong)
        v.sentence += f" Left out: {names} (samples not delivered exactly once)."
    return v


def data_notes(rows: list[RunRow]) -> tuple[list[str], list[str]]:
    """In words: the runs that did not deliver every sample exactly once, and the runs whose
    workers sat idle (fewer shards to read than workers)."""
    fix = {  # how the dataset splits its stream between workers
        "shards": "(here `dataset.split_by_worker=true`)",
        "custom": "(`torch.utils.data.get_worker_info()` in its `__iter__`)",
    }
    delivery = [
        f"**{r.name}**: {r.exactly_once}. Its samples/s counts every repeat and it trained on "
        "another epoch than the others; an IterableDataset must split its shards by worker "
        f"{fix.get(r.params.get('dataset.name', ''), '')}".rstrip()
        + "."
        for r in rows
        if r.delivered_wrong
    ]
    idle = []
    for r in rows:
        n = r.value(keys.IDLE_WORKERS)
        if n > 0:
            workers = r.params.get(keys.WORKERS_PARAM, "?")
            idle.append(
                f"**{r.name}**: {n:.0f} of {workers} workers sat idle: each stream of shards "
                "is read by one worker, and there were fewer streams (at most one per shard, "
                "`dataset.streams`) than workers."
            )
    return delivery, idle


def _compare(a: RunRow, b: RunRow, key: str) -> str | None:
    x, y = a.histories[key], b.histories[key]
    if len(x) != len(y):
        return f"{key}: {a.name} has {len(x)} epochs, {b.name} has {len(y)}"
    for i, (u, v) in enumerate(zip(x, y, strict=True)):
        if u != v:  # to the last bit: the same seed must give the same numbers
            return f"{key} differs between {a.name} and {b.name} at epoch {i}: {u!r} vs {v!r}"
    return None


def check_reproducibility(rows: list[RunRow], varied: list[str]) -> tuple[list[str], str]:
    """FINISHED train runs differing only in settings that must not change training (worker
    count and context, pinning, prefetch, the decoder, storage latency, cache state, repeats)
    must have identical loss/accuracy histories. Batch size, dataset, model, seed and the like
    define training: runs are compared only within their own values of those.
    Returns (warnings, tag value)."""
    groups: dict[tuple, list[RunRow]] = {}
    for row in (r for r in rows if r.finished and r.mode == keys.MODE_TRAIN and r.histories):
        skip = keys.TRAINING_INVARIANT_PARAMS  # the rest define training: compare within them
        key = tuple((k, row.params.get(k, "")) for k in varied if k not in skip)
        groups.setdefault(key, []).append(row)
    warnings, compared = [], False
    for ref, *others in (g for g in groups.values() if len(g) > 1):
        for other in others:
            for key in (k for k in HISTORIES if k in ref.histories and k in other.histories):
                compared = True
                if problem := _compare(ref, other, key):
                    warnings.append(problem)
    if warnings:
        return warnings, ("mismatch: " + "; ".join(warnings))[:4000]
    return warnings, "identical" if compared else "n/a"


def find_ceilings(groups: list[Group]) -> tuple[list[str], list[float]]:
    """Pipeline efficiency wherever train, loader_only and model_only ran with one setting:
    a sentence naming the bottleneck, and the efficiency, per setting."""
    by_setting: dict[tuple, dict[str, Group]] = {}
    for g in groups:
        by_setting.setdefault(g.without(MODE), {})[g.runs[0].mode] = g
    lines, efficiencies = [], []
    for modes in (m for m in by_setting.values() if set(keys.MODES) <= m.keys()):
        train, loader, model = (modes[m].median() for m in keys.MODES)
        if min(loader, model) <= 0:
            continue
        if loader < model:
            why = f"input-bound: the loader alone delivers {loader:.0f} samples/s, "
            why += f"the model alone could take {model:.0f}"
        else:
            why = f"compute-bound: the model alone takes {model:.0f} samples/s, "
            why += f"the loader alone could deliver {loader:.0f}"
        efficiencies.append(train / min(loader, model))
        eff = f"{train:.0f} ÷ {min(loader, model):.0f} = {efficiencies[-1]:.0%}"
        setting = ", ".join(f"{k}={v}" for k, v in modes[keys.MODE_TRAIN].without(MODE))
        setting = setting or re.sub(r" mode=\S+", "", modes[keys.MODE_TRAIN].label)
        lines.append(
            f"{setting}: pipeline efficiency = train samples/s ÷ "
            f"min(loader_only, model_only) = {eff}; {why}."
        )
    return lines, efficiencies
