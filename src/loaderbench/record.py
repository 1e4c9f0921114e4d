"""What a job's run records, and how it ends: FINISHED with its summary, KILLED by a stop
signal, or FAILED with its traceback.

A run is opened only once the job is built (:func:`loaderbench.job.build`), so bad input leaves
nothing RUNNING; the one exception is a sweep's job, whose broken combination is recorded FAILED
so the sweep report lists it. The fixed names are :mod:`loaderbench.keys`'.
"""

from __future__ import annotations

import logging
import math
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from loaderbench import feeding, keys, tracking
from loaderbench.active import ACTIVE
from loaderbench.devices import device_label
from loaderbench.heartbeat import process_tags
from loaderbench.probe import ends_by_sampler
from loaderbench.provenance import env_tags, scheduler_job_id
from loaderbench.stopping import signal_name, signals_held
from loaderbench.timing import EpochStats, projected_samples_per_s, summary_metrics
from loaderbench.tracking_uri import KEY as URI_PARAM
from loaderbench.tracking_uri import redact

if TYPE_CHECKING:  # types only: this module builds nothing
    import torch

    from loaderbench.data import DatasetPair
    from loaderbench.job import Setup
    from loaderbench.launch import Launch
    from loaderbench.resources import ResourceUsage

log = logging.getLogger(__name__)


def params(cfg: DictConfig, setup: Setup | None, given: dict[str, str]) -> dict[str, Any]:
    """The resolved config as dotted params, the paths as typed, and what the job really used
    (``effective.*``, the data's fingerprint and sizes) once it is built."""
    out = tracking.flatten(OmegaConf.to_container(cfg, resolve=True))
    out |= {f"given.{k}": v for k, v in given.items()}  # a relative path as typed
    if isinstance(uri := out.get(URI_PARAM), str):  # refused with credentials; never recorded
        out[URI_PARAM] = redact(uri)
    if setup is not None:
        out |= {f"effective.{k}": v for k, v in setup.plan.effective.items()}
        out |= {
            "data.fingerprint": setup.data.fingerprint,
            "data.train_size": len(setup.data.train),
            "data.val_size": len(setup.data.val),
            "data.num_classes": setup.data.num_classes,
            "effective.device": str(setup.device),
        }
    return out


def tags(launch: Launch, setup: Setup | None) -> dict[str, str]:
    """Where the job came from (overrides, folders, a scheduler's job id) and, once it is built,
    the environment and why each effective setting differs from the config."""
    out = {
        keys.OVERRIDES_TAG: " ".join(launch.overrides),
        keys.ROLE_TAG: "job",
    }
    if launch.sweep_dir:
        out[keys.SWEEP_DIR_TAG] = launch.sweep_dir
    if launch.output_dir:
        out[keys.OUTPUT_DIR_TAG] = launch.output_dir
    if job := scheduler_job_id():
        out[keys.JOB_ID_TAG] = job
    out |= process_tags()  # host, pid, its start: a run whose process died can be told
    if setup is not None:
        out |= env_tags(setup.device)
        out |= {f"effective.{k}.reason": why for k, why in setup.plan.reasons.items()}
        if setup.augmentation:
            out[keys.AUGMENTATION_TAG] = setup.augmentation
        if setup.step is not None:
            out[keys.EMULATED_TAG] = "true"
    return out


class Objective(float):
    """A run's figure for a sweeper (a float), with ``fed``: whether its emulated step was fed
    (None in the other modes), which ``sweep=tune`` reads in emulated mode; and ``low``–``high``,
    the figure's 95% interval as the report's noise rule reads it (NaN where the run is too
    short to have one), which ``sweep=tune`` reads to know which full runs the rule would tie."""

    fed: bool | None = None
    low: float = math.nan
    high: float = math.nan

    def __reduce__(self) -> tuple:  # pickled by submitit's launcher: keep the attributes
        return (_objective, (float(self), self.fed, self.low, self.high))


def _objective(
    value: float, fed: bool | None, low: float = math.nan, high: float = math.nan
) -> Objective:
    out = Objective(value)
    out.fed, out.low, out.high = fed, low, high
    return out


def feed_line(summary: dict[str, float], step_ms: float) -> str:
    """An emulated run's answer in words: ``the 20 ms step waited 0.12 ms a step: fed``."""
    wait = summary.get(keys.SUMMARY_STEP_WAIT, math.nan)
    verdict = feeding.label(wait, step_ms) or "too few steps to say"
    return f"the {step_ms:.3g} ms step waited {wait:.3g} ms a step for data: {verdict}"


def summary_line(summary: dict[str, float], data: DatasetPair, device: torch.device) -> str:
    """The run's headline figures in one line: printed, and the run's description in the UI."""
    get = summary.get
    line = f"{get(keys.SUMMARY_SAMPLES_PER_S):.0f} samples/s (steady {get(keys.SUMMARY_STEADY):.0f}"
    if keys.SUMMARY_STEADY_LOW in summary:
        line += f", 95% {get(keys.SUMMARY_STEADY_LOW):.0f}–{get(keys.SUMMARY_STEADY_HIGH):.0f}"
    line += (
        f"), waiting for data {get(keys.SUMMARY_DATA_WAIT):.0%} of training time, "
        f"first batch after {get(keys.SUMMARY_FIRST_BATCH):.2f} s"
    )
    if keys.SUMMARY_PROJECTED in summary:
        line = (
            f"probe: {get(keys.SUMMARY_PROJECTED):.0f} samples/s projected to full epochs; {line}"
        )
    if keys.SUMMARY_VAL_ACC in summary:
        line += f", val acc {get(keys.SUMMARY_VAL_ACC):.3f} (chance {1 / data.num_classes:.3f})"
    memory = f"peak memory {get(keys.PEAK_RSS):.0f} MB"
    if keys.PEAK_ANON in summary:  # RSS counts mapped files' pages; anonymous memory does not
        memory += f" ({get(keys.PEAK_ANON):.0f} MB anonymous)"
    return f"{line}, {memory}, on {device_label(device)}"


class Record:
    """One job's run in ``tracker``: :meth:`open` once built, then exactly one of
    :meth:`finished`, :meth:`killed` or :meth:`failed`."""

    def __init__(
        self,
        cfg: DictConfig,
        tracker: tracking.Tracker,
        launch: Launch,
        name: str,
        given: dict[str, str],
    ):
        self.cfg, self.tracker, self.launch = cfg, tracker, launch
        self.name, self.given = name, given  # given: the paths as typed (``given.*`` params)
        self.opened = False

    def open(self, setup: Setup | None) -> None:
        """Start the run with its params and tags, and attach the resolved config."""
        self.tracker.start(
            run_name=self.name,
            params=params(self.cfg, setup, self.given),
            tags=tags(self.launch, setup),
        )
        self.opened = True
        self.tracker.log_text(OmegaConf.to_yaml(self.cfg, resolve=True), keys.CONFIG_ARTIFACT)

    def finished(
        self,
        setup: Setup,
        epochs: list[EpochStats],
        usage: ResourceUsage,
        *,
        setup_s: float,
        wall_s: float,
    ) -> float:
        """The summary metrics and line, the exactly-once verdict, FINISHED. Returns the run's
        objective: summary samples/s (a probe's projection to full epochs), or NaN when some
        epoch did not deliver every sample exactly once (its speed counts samples twice, or not
        at all: nothing to rank)."""
        summary = summary_metrics(epochs, wall_s)
        summary |= usage.metrics(wall_s) | {keys.SETUP_S: setup_s}
        if self.cfg.bench.probe_batches is not None:
            summary[keys.SUMMARY_PROJECTED] = projected_samples_per_s(
                epochs,
                setup.epoch_samples(0),
                setup.plan.in_flight,
                tail=ends_by_sampler(setup.train_loader),
            )
        self.tracker.log_metrics(summary)
        line = summary_line(summary, setup.data, setup.device)
        done = {keys.NOTE_TAG: line}
        fed = None
        if setup.step is not None:
            wait = summary.get(keys.SUMMARY_STEP_WAIT, math.nan)
            fed = feeding.is_fed(wait, setup.step.ms)
            if fed is not None:
                done[keys.FED_TAG] = feeding.label(wait, setup.step.ms)
            line = done[keys.NOTE_TAG] = f"{feed_line(summary, setup.step.ms)}; {line}"
        if any(e.samples_seen >= 0 for e in epochs):  # counted (not model_only's cached batch)
            done[keys.EXACTLY_ONCE_TAG] = "; ".join(setup.delivery) or keys.EXACTLY_ONCE_OK
        self.tracker.set_tags(done)
        self.tracker.end("FINISHED")
        log.info("%s", line)
        log.info("recorded: %s", self.tracker.where())
        if setup.delivery:
            return math.nan
        value = summary.get(keys.SUMMARY_PROJECTED, summary[keys.SUMMARY_SAMPLES_PER_S])
        steady, low, high = summary.get(keys.SUMMARY_STEADY, math.nan), math.nan, math.nan
        if steady > 0 and keys.SUMMARY_STEADY_LOW in summary:  # scaled as the verdict scales it
            low = value * summary[keys.SUMMARY_STEADY_LOW] / steady
            high = value * summary[keys.SUMMARY_STEADY_HIGH] / steady
        return _objective(value, fed, low, high)

    def killed(self, stop: BaseException) -> None:
        """Ctrl-C or SIGTERM: the open run KILLED with the signal's name, uninterrupted by a
        second signal; :data:`~loaderbench.active.ACTIVE` keeps its id for the command's last
        line."""
        if not self.opened:
            return
        with signals_held():
            self.tracker.set_tags({keys.KILLED_BY_TAG: signal_name(stop)})
            self.tracker.end("KILLED")
        ACTIVE.stopped_run = self.tracker.run_id

    def failed(self, exc: BaseException, setup: Setup | None) -> None:
        """FAILED with the traceback as ``error.txt`` (in the run and the job's folder). A
        sweep's job opens its run for this if the job broke before it was open, so the sweep
        report lists the broken combination; a single run that never opened stays unrecorded."""
        error = "".join(traceback.format_exception(exc))
        if self.launch.output_dir:  # the sweep callback counts failures from these files too
            Path(self.launch.output_dir, keys.ERROR_ARTIFACT).write_text(error)
        if self.launch.multirun and not self.opened:
            self.tracker.start(
                run_name=self.name,
                params=params(self.cfg, setup, self.given),
                tags=tags(self.launch, setup),
            )
            self.opened = True
        if self.opened:
            self.tracker.log_text(error, keys.ERROR_ARTIFACT)
            self.tracker.end("FAILED")
