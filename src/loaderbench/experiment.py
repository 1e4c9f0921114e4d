"""One job: read the config tree, build everything, train while measuring, record the run.

This module reads a job's config tree (a tune sweep's search reads ``tune.*`` in
:mod:`loaderbench.tune`). Everything that can fail on bad input
(device, loader values, dataset files, memory) is built in :func:`prepare`, before a run is
opened in the tracking store, so a typo costs nothing and leaves nothing RUNNING.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from loaderbench import exactly_once, keys, store, tracking
from loaderbench.cli import signals_held, stopped_with_workers
from loaderbench.config import ConfigError
from loaderbench.data import (
    DatasetPair,
    LoaderFailure,
    LoaderPlan,
    build_loader,
    check_picklable,
    check_shared_memory,
    close_loader,
    epoch_samples,
    explain_loader_error,
    first_sample,
    fit_plan,
    plan_loader,
    sample_bytes,
    set_epoch,
    transformed,
)
from loaderbench.devices import configure_determinism, device_label, resolve_device
from loaderbench.loop import EpochRunner, Progress
from loaderbench.models import build_model, check_model
from loaderbench.naming import run_name
from loaderbench.provenance import env_tags, scheduler_job_id
from loaderbench.resources import ResourceMonitor
from loaderbench.timing import (
    EpochStats,
    epoch_metrics,
    projected_samples_per_s,
    summary_metrics,
)

log = logging.getLogger(__name__)


@dataclass
class Launch:
    """How this job was started (from Hydra's runtime config when there is one)."""

    overrides: list[str] = field(default_factory=list)
    output_dir: str | None = None
    sweep_dir: str | None = None
    multirun: bool = False
    launch_dir: str = field(default_factory=os.getcwd)
    swept: list[str] | None = None  # the sweep's varied keys (from the sweep callback)

    @classmethod
    def from_hydra(cls) -> Launch:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return cls()
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return cls(
            overrides=list(hc.overrides.task),
            output_dir=hc.runtime.output_dir,
            sweep_dir=hc.sweep.dir if multirun else None,
            multirun=multirun,
            launch_dir=hc.runtime.cwd,
            swept=swept_keys() if multirun else None,
        )


@dataclass
class Setup:
    """Everything a job needs, built and validated before its run is opened."""

    device: torch.device
    plan: LoaderPlan
    data: DatasetPair
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: Any
    val_loader: Any
    mode: str
    channels_last: bool
    batch_bytes: int = 0  # one training batch, estimated from one sample (0: no workers)
    delivery: list[str] = field(default_factory=list)  # epochs not delivered exactly once


def swept_keys() -> list[str] | None:
    """The sweep's varied keys, as the sweep callback exported them (None outside a sweep)."""
    value = os.environ.get(keys.SWEPT_ENV)
    return value.split(",") if value else None


def make_tracker(cfg: DictConfig, launch: Launch) -> tracking.Tracker:
    if not cfg.mlflow.enabled:
        return tracking.NullTracker()
    uri = store.resolve_tracking_uri(cfg.mlflow.tracking_uri, launch.launch_dir)
    store.check_reachable(uri)  # before any work: a dead server is one line naming the URI
    return tracking.MlflowTracker(
        uri,
        cfg.mlflow.experiment,
        parent_run_id=os.environ.get(keys.PARENT_ENV) if launch.multirun else None,
        system_metrics=cfg.mlflow.system_metrics,
        offline_dir=Path(launch.output_dir or launch.launch_dir) / keys.OFFLINE_DIR,
    )


def _instantiate_dataset(cfg: DictConfig) -> DatasetPair:
    options = OmegaConf.to_container(cfg.dataset, resolve=True)
    options.pop("name", None)  # the option's label, recorded as a param; not an argument
    try:
        return instantiate(options)
    except InstantiationException as exc:  # Hydra wraps the builder's own clear error
        if isinstance(exc.__cause__, (ConfigError, LoaderFailure)):  # e.g. a bad sample
            raise exc.__cause__ from None
        raise


PATH_KEYS = (  # config values that name files or folders
    "dataset.root",
    "dataset.path",
    "dataset.labels_path",
    "dataset.cache_dir",
    *(f"dataset.{kw}.{k}" for kw in ("kwargs", "val_kwargs") for k in ("root", "path")),
)


def resolve_paths(cfg: DictConfig, launch_dir: str) -> dict[str, str]:
    """Make relative paths absolute against the launch directory, in place, so the recorded
    config reproduces from anywhere (and a job that runs elsewhere, e.g. under submitit, reads
    the same files). Returns the original spellings of the paths it changed."""
    given = {}
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if isinstance(value, str) and value and not os.path.isabs(value):
            given[key] = value
            OmegaConf.update(cfg, key, os.path.normpath(os.path.join(launch_dir, value)))
    return given


def _check_required(cfg: DictConfig) -> None:
    """A mandatory value left as ``???`` (e.g. dataset.root) is a config error naming it."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"{exc.full_key} must be set: pass {exc.full_key}=...") from None


def prepare(cfg: DictConfig) -> Setup:
    """Validate the config and build device, data, loaders, model and optimizer."""
    _check_required(cfg)
    mode = cfg.bench.mode
    if mode not in keys.MODES:
        raise ConfigError(f"bench.mode={mode}: choose one of {', '.join(keys.MODES)}")
    if cfg.trainer.epochs < 1:
        raise ConfigError(f"trainer.epochs={cfg.trainer.epochs}: must be at least 1")
    if cfg.bench.warmup_batches < 0:
        raise ConfigError(f"bench.warmup_batches={cfg.bench.warmup_batches}: must be 0 or more")
    if not 0 < cfg.bench.pss_budget <= 1:
        raise ConfigError(
            f"bench.pss_budget={cfg.bench.pss_budget}: a share of one core, in (0, 1]"
        )
    probe = cfg.bench.probe_batches
    if probe is not None and probe < 4:  # its projection needs two halves of two steps each
        raise ConfigError(f"bench.probe_batches={probe}: must be at least 4, or null")
    device = resolve_device(cfg.device.type)
    plan = plan_loader(cfg.loader, device=device)
    configure_determinism(cfg.trainer.deterministic, device)

    seed = int(cfg.seed)
    data = _instantiate_dataset(cfg)
    preset = instantiate(cfg.transforms)
    train_set = transformed(data.train, preset.train, seed, random=getattr(preset, "random", True))
    val_set = transformed(data.val, preset.val, seed, random=False)
    fit_plan(plan, train_set)
    context, workers = plan.effective["multiprocessing_context"], plan.num_workers
    check_picklable({"train": train_set, "val": val_set}, context, workers)

    # One sample, fetched here, sizes the batches workers will pass through /dev/shm and
    # tells the model its input.
    sample = first_sample(train_set)
    batch_bytes = sample_bytes(sample) * plan.batch_size if plan.num_workers else 0
    if warning := check_shared_memory(plan, batch_bytes):
        log.warning("%s", warning)
    det = bool(cfg.trainer.deterministic)

    torch.manual_seed(seed)  # model initialisation: the same weights for every loader setting
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    model, left_out = build_model(spec, num_classes=data.num_classes, input_shape=sample[0].shape)
    model = model.to(device)
    check_model(model, torch.stack([sample[0]] * 2), data.num_classes, device)
    for key, why in left_out.items():  # recorded like a loader setting that was not used
        plan.effective[f"model.{key}"], plan.reasons[f"model.{key}"] = None, why
    optimizer = instantiate(cfg.optim)(model.parameters())
    return Setup(
        device=device,
        plan=plan,
        data=data,
        model=model,
        optimizer=optimizer,
        train_loader=build_loader(train_set, plan, seed=seed, train=True, deterministic=det),
        val_loader=build_loader(val_set, plan, seed=seed, train=False, deterministic=det),
        batch_bytes=batch_bytes,
        mode=mode,
        channels_last=bool(cfg.model.get("channels_last", False)),
    )


def train(setup: Setup, cfg: DictConfig, tracker: tracking.Tracker) -> list[EpochStats]:
    """The measured epochs; metrics go to ``tracker`` once per epoch."""
    s = setup
    runner = EpochRunner(
        s.mode,
        s.model,
        s.optimizer,
        s.device,
        s.train_loader,
        s.val_loader,
        channels_last=s.channels_last,
        max_batches=cfg.bench.probe_batches,
        sample_ids=len(s.data.train),
    )
    before_epoch = getattr(s.data.train, "before_epoch", None)
    epochs: list[EpochStats] = []
    for epoch in range(cfg.trainer.epochs):
        set_epoch(s.train_loader, epoch)
        if before_epoch is not None:
            before_epoch(epoch)  # e.g. drop the files from the page cache: a really cold read
        total = min(len(s.train_loader), cfg.bench.probe_batches or len(s.train_loader))
        progress = Progress(total, f"epoch {epoch}", enabled=cfg.trainer.progress)
        try:
            stats = runner.run_epoch(
                epoch, warmup_batches=cfg.bench.warmup_batches, progress=progress
            )
        except RuntimeError as exc:  # torch's raw words for a known fault: add cause and fix
            if stop := stopped_with_workers(exc):  # not a fault: the job was stopped
                raise stop from None
            where = f"epoch {epoch}, after {progress.batches} batches had arrived"
            if hint := explain_loader_error(exc, s.plan, s.batch_bytes, where):
                raise LoaderFailure(hint) from exc
            raise
        finally:
            progress.close()
        tracker.log_metrics(epoch_metrics(stats), step=epoch)
        # a probe cuts its epochs short: what it fetched is what was due
        due = stats.samples if runner.max_batches else epoch_samples(s.train_loader, epoch)
        if problem := exactly_once.check(stats, due):
            log.warning("not exactly once: %s", problem)
            s.delivery.append(problem)
        log.info(
            "epoch %d: %.0f samples/s, waiting for data %.0f%% of the time%s%s",
            epoch,
            stats.samples_per_s,
            100 * stats.data_wait_fraction,
            f", train loss {stats.loss:.4f}" if s.mode == "train" else "",
            f", val acc {stats.val_acc:.3f}" if not math.isnan(stats.val_acc) else "",
        )
        epochs.append(stats)
    return epochs


def _params(cfg: DictConfig, setup: Setup | None, given: dict[str, str]) -> dict[str, Any]:
    params = tracking.flatten(OmegaConf.to_container(cfg, resolve=True))
    params |= {f"given.{k}": v for k, v in given.items()}  # a relative path as typed
    if setup is not None:
        params |= {f"effective.{k}": v for k, v in setup.plan.effective.items()}
        params |= {
            "data.fingerprint": setup.data.fingerprint,
            "data.train_size": len(setup.data.train),
            "data.val_size": len(setup.data.val),
            "data.num_classes": setup.data.num_classes,
            "effective.device": str(setup.device),
        }
    return params


def _tags(launch: Launch, setup: Setup | None) -> dict[str, str]:
    tags = {
        keys.OVERRIDES_TAG: " ".join(launch.overrides),
        keys.ROLE_TAG: "job",
    }
    if launch.sweep_dir:
        tags[keys.SWEEP_DIR_TAG] = launch.sweep_dir
    if launch.output_dir:
        tags[keys.OUTPUT_DIR_TAG] = launch.output_dir
    if job := scheduler_job_id():
        tags[keys.JOB_ID_TAG] = job
    if setup is not None:
        tags |= env_tags(setup.device)
        tags |= {f"effective.{k}.reason": why for k, why in setup.plan.reasons.items()}
    return tags


def run(
    cfg: DictConfig, tracker: tracking.Tracker | None = None, launch: Launch | None = None
) -> float:
    """Run one job; return its summary samples/s (the objective a Hydra sweeper can use), or
    for a probe its projection to full epochs.

    In a multirun a failing job is recorded as FAILED (with ``error.txt``) and returns NaN, so
    the sweep goes on; in a single run the error propagates after it is recorded. A run that
    did not deliver every sample exactly once returns NaN too: a tuner must not rank it.
    """
    wall0 = time.perf_counter()
    launch = launch or Launch.from_hydra()
    tracker = tracker or make_tracker(cfg, launch)
    name = run_name(cfg, launch.swept)
    setup: Setup | None = None
    started = False
    given = resolve_paths(cfg, launch.launch_dir)
    try:
        t0 = time.perf_counter()
        setup = prepare(cfg)
        setup_s = time.perf_counter() - t0
        tracker.start(run_name=name, params=_params(cfg, setup, given), tags=_tags(launch, setup))
        started = True
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), keys.CONFIG_ARTIFACT)
        data_stats = {f"data/{k}": v for k, v in setup.data.stats.items()}
        if (idle := getattr(setup.train_loader, "idle_workers", None)) is not None:
            data_stats[keys.IDLE_WORKERS] = idle
            if idle:
                log.warning("%d of %d workers have no shard to read", idle, setup.plan.num_workers)
        if data_stats:
            tracker.log_metrics(data_stats)
        budget = cfg.bench.pss_budget
        with ResourceMonitor(cfg.bench.memory_interval_s, pss_budget=budget) as monitor:
            epochs = train(setup, cfg, tracker)
        wall_s = time.perf_counter() - wall0
        summary = summary_metrics(epochs, wall_s)
        summary |= monitor.usage.metrics(wall_s) | {keys.SETUP_S: setup_s}
        if cfg.bench.probe_batches is not None:
            summary[keys.SUMMARY_PROJECTED] = projected_samples_per_s(
                epochs, epoch_samples(setup.train_loader, 0)
            )
        tracker.log_metrics(summary)
        line = summary_line(summary, setup.data, setup.device)
        tags = {keys.NOTE_TAG: line}
        if any(e.samples_seen >= 0 for e in epochs):  # counted (not model_only's cached batch)
            tags[keys.EXACTLY_ONCE_TAG] = "; ".join(setup.delivery) or keys.EXACTLY_ONCE_OK
        tracker.set_tags(tags)
        tracker.end("FINISHED")
        log.info("%s", line)
        log.info("recorded: %s", tracker.where())
        if setup.delivery:  # its speed counts samples twice (or not at all): nothing to rank
            return math.nan
        return summary.get(keys.SUMMARY_PROJECTED, summary[keys.SUMMARY_SAMPLES_PER_S])
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (cli.Interrupted): KILLED, say which
        if started:
            with signals_held():
                tracker.set_tags({keys.KILLED_BY_TAG: getattr(exc, "name", "SIGINT")})
                tracker.end("KILLED")
            exc.run_id = tracker.run_id  # for the one line the command ends with
        raise
    except Exception as exc:
        error = traceback.format_exc()
        if launch.output_dir:  # the sweep callback counts failures from these files too
            Path(launch.output_dir, keys.ERROR_ARTIFACT).write_text(error)
        if launch.multirun and not started:
            # Record the broken combination so the sweep report lists it.
            tracker.start(
                run_name=name, params=_params(cfg, setup, given), tags=_tags(launch, setup)
            )
            started = True
        if started:
            tracker.log_text(error, keys.ERROR_ARTIFACT)
            tracker.end("FAILED")
        if not launch.multirun:
            raise
        log.error("job failed: %s: %s", type(exc).__name__, exc)
        return float("nan")
    finally:
        if setup is not None:
            close_loader(setup.train_loader)
            close_loader(setup.val_loader)


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
