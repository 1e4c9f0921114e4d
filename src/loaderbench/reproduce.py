"""Re-run a recorded run from its stored ``config.yaml`` and check the numbers come out the same.

The promise being checked is DESIGN.md's: the same seed gives bit-identical per-epoch losses and
accuracies. It is only made for the same software on the same machine, so differing ``env.*``
tags are reported as warnings next to the verdict; throughput is listed for information (it is
a measurement, never expected to repeat exactly). A sweep parent reproduces each FINISHED child
as a standalone run; every new run carries ``loaderbench.reproduces`` = the original's id.

    python -m loaderbench.reproduce RUN_ID                      # in the default store
    python -m loaderbench.reproduce RUN_ID --tracking-uri URI   # e.g. sqlite:///path/mlflow.db

prints "match" or the differing per-epoch values. Exit status: 0 when every per-epoch loss and
accuracy is bit-identical, 1 on any difference, 2 when the run cannot be reproduced at all.

Rebuilding a run imports what its stored config names (:mod:`loaderbench.trust`). A name outside
loaderbench, torch, torchvision and hydra (a user's ``mypkg.data.MyDataset``, or anything
anyone with write access to a shared store typed) is listed, and refused without ``--trust``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from loaderbench import keys, store, trust
from loaderbench.tracking_uri import add_tracking_uri_option

log = logging.getLogger(__name__)

REPRODUCES_TAG = keys.REPRODUCES_TAG
RESULT_TAG = keys.REPRODUCE_RESULT_TAG
CONFIG_ARTIFACT = keys.CONFIG_ARTIFACT
COMPARED = (keys.LOSS_TRAIN, keys.ACC_TRAIN, keys.LOSS_VAL, keys.ACC_VAL)
THROUGHPUT = (keys.SUMMARY_SAMPLES_PER_S, keys.SUMMARY_STEADY, keys.SUMMARY_FIRST_BATCH)
ENV_TAGS = keys.ENV_TAGS
TRUSTED = trust.ALLOWED


class ReproduceError(store.NotInStore):
    """The run cannot be reproduced: no such store or run, or no stored ``config.yaml``."""


@dataclass
class Comparison:
    """One original run against its reproduction."""

    original_id: str
    name: str
    new_id: str | None = None
    differences: list[str] = field(default_factory=list)  # losses/accuracies: any entry fails
    throughput: list[str] = field(default_factory=list)  # information only
    warnings: list[str] = field(default_factory=list)  # environment drift

    @property
    def matched(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        head = f"{self.name} ({self.original_id}) -> {self.new_id or 'no run'}: "
        head += "match" if self.matched else "MISMATCH"
        out = [head, *(f"  {d}" for d in self.differences)]
        out += [f"  warning: {w}" for w in self.warnings]
        out += [f"  throughput (information only): {x}" for x in self.throughput]
        return out


def _show(values: list[float] | None) -> str:
    if not values:
        return "nothing"
    return repr(values[0]) if len(values) == 1 else f"{len(values)} values {values!r}"


def compare_histories(client: Any, original_id: str, new_id: str) -> list[str]:
    """Per-epoch losses and accuracies, to the last bit; one line per differing epoch."""
    problems = []
    for key in COMPARED:
        old = store.metric_history(client, original_id, key)
        new = store.metric_history(client, new_id, key)
        for step in sorted(old.keys() | new.keys()):
            if old.get(step) != new.get(step):
                was, now = _show(old.get(step)), _show(new.get(step))
                problems.append(f"{key} epoch {step}: original {was}, reproduced {now}")
    return problems


def compare_throughput(old: dict[str, float], new: dict[str, float]) -> list[str]:
    lines = []
    for key in (k for k in THROUGHPUT if k in old and k in new):
        change = f" ({new[key] / old[key] - 1:+.1%})" if old[key] else ""
        lines.append(f"{key} {old[key]:.4g} -> {new[key]:.4g}{change}")
    return lines


def compare_env(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return [
        f"{key} was {old.get(key, 'unrecorded')}, now {new.get(key, 'unrecorded')}; "
        "bit-exactness is only promised on the same software and machine"
        for key in ENV_TAGS
        if old.get(key) != new.get(key)
    ]


def load_config(client: Any, run_id: str) -> Any:
    """The run's resolved config, from its ``config.yaml`` artifact."""
    cfg = store.run_config(client, run_id)
    if cfg is None:
        raise ReproduceError(f"run {run_id} has no {CONFIG_ARTIFACT} artifact to reproduce from")
    return cfg


class Untrusted(ReproduceError):
    """The stored config names code outside loaderbench, torch and hydra, and --trust was not
    given: reproducing would import and run it."""


def check_trusted(configs: dict[str, Any]) -> list[str]:
    """One line per importable name outside :data:`loaderbench.trust.ALLOWED` in the stored
    configs (``run id -> config``), before anything is imported."""
    from omegaconf import OmegaConf

    lines = []
    for run_id, cfg in configs.items():
        for key, name in trust.untrusted(OmegaConf.to_container(cfg, resolve=False)):
            lines.append(f"  {key}={name} (run {run_id})")
    return lines


def reproduce_run(client: Any, run: Any, tracking_uri: str, cfg: Any = None) -> Comparison:
    """Re-run ``run`` into the same store and experiment; compare, tag, return the result."""
    from loaderbench.experiment import Launch, make_tracker
    from loaderbench.experiment import run as run_job

    original = run.info.run_id
    comparison = Comparison(original, run.info.run_name or original[:8])
    cfg = load_config(client, original) if cfg is None else cfg
    cfg.mlflow.enabled = True
    cfg.mlflow.tracking_uri = tracking_uri  # the store the original is in, wherever we run
    # The original override string gives the new run the same name; Hydra's grammar has no
    # spaces outside quotes in the overrides loaderbench's runs use, so a split undoes the join.
    launch = Launch(overrides=run.data.tags.get(keys.OVERRIDES_TAG, "").split())
    tracker = make_tracker(cfg, launch)
    log.info("reproducing %s (%s)", comparison.name, original)
    try:
        run_job(cfg, tracker=tracker, launch=launch)
    except Exception as exc:  # recorded as a difference: in a sweep the next child still runs
        comparison.differences.append(f"the reproduction failed: {type(exc).__name__}: {exc}")
    comparison.new_id = tracker.run_id
    if comparison.new_id is None:  # failed before a run was opened (e.g. a missing folder)
        return comparison

    new = client.get_run(comparison.new_id)
    if new.info.status == "FINISHED":
        comparison.differences += compare_histories(client, original, comparison.new_id)
    comparison.throughput = compare_throughput(run.data.metrics, new.data.metrics)
    comparison.warnings = compare_env(run.data.tags, new.data.tags)
    for warning in comparison.warnings:
        log.warning("%s: %s", comparison.name, warning)
    verdict = "match" if comparison.matched else "mismatch: " + "; ".join(comparison.differences)
    if comparison.warnings:  # recorded with the verdict: a match elsewhere proves less
        drift = [key for key in ENV_TAGS if run.data.tags.get(key) != new.data.tags.get(key)]
        verdict = f"{verdict} (environment differs: {', '.join(drift)})"
    client.set_tag(comparison.new_id, REPRODUCES_TAG, original)
    client.set_tag(comparison.new_id, RESULT_TAG, verdict[:4000])
    return comparison


def reproduce(run_id: str, tracking_uri: str, *, trust: bool = False) -> list[Comparison]:
    """Reproduce a run, or every FINISHED child of a sweep parent; one Comparison each. A
    stored config that names code outside loaderbench, torch and hydra is :class:`Untrusted`
    unless ``trust``: nothing is imported or run before that check."""
    client = store.open_store(tracking_uri, must_exist=True, error=ReproduceError)
    run = store.get_run(client, run_id, ReproduceError)
    runs = [run]
    if store.is_sweep(run):
        runs = store.child_runs(client, run, finished_only=True)
        if not runs:
            raise ReproduceError(f"sweep {run_id} has no FINISHED runs to reproduce")
        log.info("sweep %s: reproducing %d runs", run_id, len(runs))
    configs = {r.info.run_id: load_config(client, r.info.run_id) for r in runs}
    if names := check_trusted(configs):
        if not trust:
            raise Untrusted(
                f"the stored config of {run_id} names code outside "
                f"{', '.join(TRUSTED)}; reproducing it would import and run:\n"
                + "\n".join(names)
                + "\nanyone who can write runs to this store chose these names: read them, and "
                "if you trust them run again with --trust"
            )
        log.warning("--trust: importing code the stored config names:\n%s", "\n".join(names))
    return [reproduce_run(client, r, tracking_uri, configs[r.info.run_id]) for r in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loaderbench.reproduce",
        description="Re-run a recorded run (or every finished run of a sweep) and check that its "
        "losses repeat exactly.",
    )
    parser.add_argument("run_id", help="a run id, or a sweep's parent run id")
    add_tracking_uri_option(parser)
    parser.add_argument(
        "--trust",
        action="store_true",
        help="import the code the stored config names even outside loaderbench, torch, "
        "torchvision and hydra (e.g. your own dataset package)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # config.yaml reads
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        uri = store.resolve_tracking_uri(args.tracking_uri, os.getcwd())
        comparisons = reproduce(args.run_id, uri, trust=args.trust)
    except (ReproduceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for comparison in comparisons:
        print("\n".join(comparison.lines()))
    matched = sum(c.matched for c in comparisons)
    if len(comparisons) > 1:
        print(f"{matched} of {len(comparisons)} runs reproduced exactly")
    print("match" if matched == len(comparisons) else "mismatch")
    return 0 if matched == len(comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
