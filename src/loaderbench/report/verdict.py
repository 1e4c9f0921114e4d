"""Which setting to use, with the noise respected: the verdict, the winner and the code to paste
(a DataLoader call, or the torchdata.nodes pipeline of a loader-thread winner).

Every group of runs gets a 95% interval for its throughput (``summary/samples_per_s``):
- with repeats, the range of the repeats (min to max);
- a single run, its own interval: the bootstrap interval of its steady throughput
  (``summary/steady_samples_per_s_low/_high``, from contiguous blocks of steps), applied as a
  relative width around its figure.
The best group wins only when its interval lies wholly above every other group's; otherwise
there is no significant difference and the verdict says so, and recommends the simplest of the
tied settings (fewest workers, then fewest knobs away from torch's defaults). Within-run noise
misses slow drifts between runs: with repeats (``+bench.repeat=0,1,2``) the range covers both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loaderbench import cores, keys

if TYPE_CHECKING:  # the types are only annotations here
    from loaderbench.report.rows import Group, RunRow

WORKERS = keys.WORKERS_PARAM

# loader param -> (DataLoader argument, torch's default as the string MLflow stores)
TORCH_DEFAULTS = {
    "loader.batch_size": ("batch_size", "1"),
    "loader.shuffle": ("shuffle", "False"),
    "loader.num_workers": ("num_workers", "0"),
    "loader.multiprocessing_context": ("multiprocessing_context", "None"),
    "loader.pin_memory": ("pin_memory", "False"),
    "loader.persistent_workers": ("persistent_workers", "False"),
    "loader.prefetch_factor": ("prefetch_factor", "None"),
    "loader.drop_last": ("drop_last", "False"),
    "loader.timeout": ("timeout", "0.0"),
}


@dataclass
class Interval:
    value: float
    low: float
    high: float

    @property
    def known(self) -> bool:
        return not math.isnan(self.low)

    @property
    def half_width(self) -> float:
        """Relative half-width, e.g. 0.04 for ±4%."""
        return (self.high - self.low) / 2 / self.value if self.value > 0 else math.nan


def interval(group: Group) -> Interval:
    value = group.median()
    if len(group.values()) > 1:
        return Interval(value, min(group.values()), max(group.values()))
    run = group.runs[0]
    low, high = run.value(keys.SUMMARY_STEADY_LOW), run.value(keys.SUMMARY_STEADY_HIGH)
    steady = run.value(keys.SUMMARY_STEADY)
    if math.isnan(low) or not steady > 0:
        return Interval(value, math.nan, math.nan)
    return Interval(value, value * low / steady, value * high / steady)


def _median(group: Group) -> float:
    return group.median()


def _setting(row: RunRow, param: str, default: str) -> str | None:
    """The value to recommend, or None where it is torch's default, unset, or was ignored
    (``effective.<knob>`` back at the default: e.g. pin_memory without an accelerator)."""
    value = row.params.get(param, "")
    effective = row.params.get(keys.EFFECTIVE_PREFIX + param.split(".", 1)[1])
    if value in ("", "None", "null", default) or effective in ("None", default):
        return None
    return value


def _python(value: str) -> str:
    if value in ("True", "False", "None") or value.replace(".", "", 1).isdigit():
        return value
    return repr(value)


def dataloader_call(row: RunRow) -> str:
    """``DataLoader(dataset, ...)`` with the knobs that differ from torch's defaults."""
    args = ["dataset"]
    for param, (arg, default) in TORCH_DEFAULTS.items():
        if (value := _setting(row, param, default)) is not None:
            args.append(f"{arg}={_python(value)}")
    return f"DataLoader({', '.join(args)})"


def ranks_of(row: RunRow) -> int:
    """The run's DDP ranks (``trainer.ranks``; 1 for a run from before they existed)."""
    value = row.params.get(keys.RANKS_PARAM, "1")
    return int(value) if value.isdigit() else 1


def _cores(row: RunRow) -> int | None:
    value = row.tags.get(keys.CPU_AFFINITY_TAG, "")
    return int(value) if value.isdigit() else None


def per_rank(row: RunRow) -> str:
    """The recommended setting as each rank uses it, or "" with one rank: ``per rank:
    `DataLoader(..., num_workers=2)`; 4 ranks use 12 of 16 cores``."""
    if (n := ranks_of(row)) <= 1:
        return ""
    workers = int(row.params.get(WORKERS, "0") or 0)
    return cores.per_rank(snippet(row), n, workers, _cores(row))


def cores_reason(row: RunRow) -> str:
    """``2 ranks × 2 workers on 2 cores: the workers take the ranks' cores``, or ""."""
    n, cpus = ranks_of(row), _cores(row)
    if n <= 1 or cpus is None:
        return ""
    workers = int(row.params.get(WORKERS, "0") or 0)
    return cores.explain(n, workers, cpus, row.params.get("loader.backend"))


def threads(row: RunRow) -> bool:
    """The run's batches came from loader threads (``effective.backend``)."""
    return row.params.get(keys.BACKEND_EFFECTIVE) == keys.THREADS


def thread_pipeline(row: RunRow) -> str:
    """The torchdata.nodes pipeline a thread run used, as code to paste (the backend's own:
    ``loaderbench.data.loader.threads``): the same sampler, threads, batches and buffer."""
    get = row.params.get
    workers, batch = get(WORKERS, "0"), get("loader.batch_size", "64")
    sampler = "RandomSampler" if get("loader.shuffle", "True") == "True" else "SequentialSampler"
    prefetch = get("effective.prefetch_factor", "None")
    buffer = (int(prefetch) if prefetch.isdigit() else 2) * int(workers)  # as the backend buffers
    lines = [
        "import torchdata.nodes as tn",
        f"from torch.utils.data import {sampler}, default_collate",
        "",
        f"node = tn.SamplerWrapper({sampler}(dataset))",
        f"node = tn.ParallelMapper(node, map_fn=dataset.__getitem__, num_workers={workers}, "
        'method="thread", in_order=True)',
        f"node = tn.Batcher(node, batch_size={batch}, drop_last={get('loader.drop_last', 'False')})",
        "node = tn.Mapper(node, default_collate)",
    ]
    if get("effective.pin_memory") == "True":
        lines.append("node = tn.PinMemory(node)")
    lines += [f"node = tn.Prefetcher(node, prefetch_factor={buffer})", "loader = tn.Loader(node)"]
    return "\n".join(lines)


def snippet(row: RunRow) -> str:
    """What to paste for the run's settings: a ``DataLoader(...)`` call, or for loader threads
    the torchdata.nodes pipeline that ran."""
    return thread_pipeline(row) if threads(row) else dataloader_call(row)


def simplicity(group: Group) -> tuple[int, bool, int]:
    """Fewer workers first, then processes before threads (no extra library), then fewer knobs
    away from torch's defaults."""
    row = group.runs[0]
    workers = int(row.params.get(WORKERS, "0") or 0)
    return workers, threads(row), dataloader_call(row).count("=")


@dataclass
class Verdict:
    sentence: str
    best: Group | None  # the fastest group (the table marks it)
    winner: str  # the WINNER_TAG value: the winning run's name, or "none"
    pick: Group | None  # what the recommendation recommends
    why: str = ""


def decide(cands: list[Group]) -> Verdict:
    """The verdict over the training groups ``cands`` (at least one)."""
    best = max(cands, key=_median)
    iv = {id(g): interval(g) for g in cands}
    b = iv[id(best)]
    head = f"{best.label} at {best.median():.0f} samples/s"
    if b.known:
        head += f" (95% interval {b.low:.0f}–{b.high:.0f})"
    if len(cands) == 1:
        return Verdict(f"Only one setting ran: {head}.", best, "none", best)
    others = [g for g in cands if g is not best]
    same = [g for g in others if ran_as(g) == ran_as(best)]
    if same:  # what differs was ignored: one setting measured twice, whatever the figures say
        ignored = sorted({k for g in same for k, v in g.key if dict(best.key).get(k) != v})
        return Verdict(
            f"No difference: {best.label} and {', '.join(g.label for g in same)} ran the same "
            f"settings ({', '.join(ignored)} had no effect here: see the effective.* params); "
            f"{best.median():.0f} vs {max(same, key=_median).median():.0f} samples/s is noise.",
            best,
            "none",
            min([best, *same], key=simplicity),
        )
    if not b.known or not all(iv[id(g)].known for g in others):
        runner = max(others, key=_median)
        return Verdict(
            f"Fastest: {head}, next {runner.label} at {runner.median():.0f} samples/s; the runs "
            "are too short to estimate their noise, so this may not be a real difference "
            "(use more steps per epoch, or +bench.repeat=0,1,2).",
            best,
            "none",
            min([best, runner], key=simplicity),
        )
    tied = [g for g in others if iv[id(g)].high >= b.low]
    if tied:
        pick = min([best, *tied], key=simplicity)
        runner = max(tied, key=_median)
        gap = best.median() / runner.median() - 1
        keep = "num_workers=0" if simplicity(pick)[0] == 0 else pick.label
        return Verdict(
            f"No significant difference between {best.label} ({best.median():.0f} samples/s) "
            f"and {runner.label} ({runner.median():.0f}): {gap:+.1%} is within the noise "
            f"(their 95% intervals, ±{b.half_width:.0%} and ±{iv[id(runner)].half_width:.0%}, "
            f"overlap); keep the simpler {keep}.",
            best,
            "none",
            pick,
        )
    winner = best.runs[0].name if len(best.runs) == 1 else best.label.split(" (")[0]
    ref = reference(best, cands)
    if ref is None:  # num_workers=0 won, or no num_workers=0 run to compare with
        runner = max(others, key=_median)
        why = (
            "num_workers=0 was fastest here"
            if best.runs[0].params.get(WORKERS) == "0"
            else ("no num_workers=0 run in this sweep to compare with")
        )
        tail = f"; next: {runner.label} at {runner.median():.0f} samples/s"
        return Verdict(f"Fastest: {head}: {why}{tail}.", best, winner, best)
    r, which = iv[id(ref)], ("matching" if _matches(ref, best) else "fastest")
    speedup = f"{best.median() / ref.median():.2f}× the {which} num_workers=0 run"
    speedup += f" ({ref.label}, {ref.median():.0f} samples/s"
    if r.low > 0:
        speedup += f"; between {b.low / r.high:.2f}× and {b.high / r.low:.2f}×"
    return Verdict(f"Fastest: {head}, {speedup}).", best, winner, best)


def ran_as(group: Group) -> tuple:
    """The group's varied settings as they ran: ``effective.<knob>`` where torch ignored or
    the planner changed a loader setting (pin_memory without an accelerator, ...)."""
    row = group.runs[0]
    ran = []
    for key, value in group.key:
        knob = key.split(".", 1)[1] if key.startswith("loader.") else None
        ran.append((key, row.params.get(keys.EFFECTIVE_PREFIX + knob, value) if knob else value))
    return tuple(ran)


IDLE = (WORKERS, *keys.WORKER_ONLY_PARAMS)  # settings that do nothing without workers


def _matches(a: Group, b: Group) -> bool:
    return a.without(*IDLE) == b.without(*IDLE)


def reference(best: Group, cands: list[Group]) -> Group | None:
    """The num_workers=0 run to compare ``best`` with: the one matching it in everything but
    the worker settings, else the fastest num_workers=0 run; None if best is one itself."""
    w0 = [g for g in cands if g.runs[0].params.get(WORKERS) == "0"]
    if not w0 or best in w0:
        return None
    return max([g for g in w0 if _matches(g, best)] or w0, key=_median)


def explain(pick: Group, cands: list[Group]) -> str:
    """One sentence on why: the stall with and without workers, and what workers cost."""
    row = pick.runs[0]
    wait = row.value(keys.SUMMARY_DATA_WAIT)
    bound = "input-bound" if wait > 0.1 else "compute-bound"
    text = f"With {pick.label} the loop waits for data {wait:.0%} of the time ({bound})"
    picked_w0 = row.params.get(WORKERS) == "0"
    other = [g for g in cands if (g.runs[0].params.get(WORKERS) == "0") != picked_w0]
    if other:
        o = max(other, key=_median).runs[0]
        text += f"; with {o.name} it waited {o.value(keys.SUMMARY_DATA_WAIT):.0%}"
        if picked_w0:
            row = o  # the workers' cost is the other setting's
    pss = row.value(keys.WORKERS_PSS)
    if not math.isnan(pss) and pss > 0:
        text += f"; {row.name}'s workers take {pss:.0f} MB of memory (PSS)"
    for g in [pick, *other_groups(other)]:
        if reason := cores_reason(g.runs[0]):
            text += f"; {g.runs[0].name}: {reason}"
    return text + "."


def other_groups(groups: list[Group]) -> list[Group]:
    """The fastest of ``groups`` (the other side of the verdict), as a list of at most one."""
    return [max(groups, key=_median)] if groups else []
