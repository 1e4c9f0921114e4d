"""One job: read the config tree, build everything, train while measuring, record the run.

This is the only module that reads the config tree. Everything that can fail on bad input
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

from loaderbench import keys, store, tracking
from loaderbench.config import ConfigError
from loaderbench.data import DatasetPair, LoaderPlan, TransformedDataset, build_loader, plan_loader
from loaderbench.data.loader import close_loader
from loaderbench.devices import resolve_device
from loaderbench.loop import Progress, evaluate, iterate_loader, train_cached_batch, train_one_epoch
from loaderbench.provenance import env_tags
from loaderbench.resources import ResourceMonitor
from loaderbench.timing import EpochStats, epoch_metrics, summary_metrics

log = logging.getLogger(__name__)
MODES = ("train", "loader_only", "model_only")


@dataclass
class Launch:
    """How this job was started (from Hydra's runtime config when there is one)."""

    overrides: list[str] = field(default_factory=list)
    output_dir: str | None = None
    sweep_dir: str | None = None
    multirun: bool = False
    launch_dir: str = field(default_factory=os.getcwd)

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


def run_name(cfg: DictConfig, overrides: list[str]) -> str:
    """A name that reads like the combination, e.g. ``w4-fork-pin-bs64 epochs=2``."""
    lc = cfg.loader
    parts = [f"w{lc.num_workers}"]
    if lc.multiprocessing_context:
        parts.append(str(lc.multiprocessing_context))
    if lc.pin_memory:
        parts.append("pin")
    if lc.persistent_workers:
        parts.append("persist")
    if lc.prefetch_factor is not None:
        parts.append(f"pf{lc.prefetch_factor}")
    parts.append(f"bs{lc.batch_size}")
    extra = []
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key.startswith(("loader", "hydra", "mlflow", "sweep")):
            continue
        extra.append(f"{key.rsplit('.', 1)[-1]}={value}")
    return " ".join(["-".join(parts), *extra])


def make_tracker(cfg: DictConfig, launch: Launch) -> tracking.Tracker:
    if not cfg.mlflow.enabled:
        return tracking.NullTracker()
    uri = store.resolve_tracking_uri(cfg.mlflow.tracking_uri, launch.launch_dir)
    return tracking.MlflowTracker(
        uri,
        cfg.mlflow.experiment,
        parent_run_id=os.environ.get(keys.PARENT_ENV) if launch.multirun else None,
        system_metrics=cfg.mlflow.system_metrics,
    )


def configure_determinism(cfg: DictConfig, device: torch.device) -> None:
    deterministic = cfg.trainer.deterministic
    if deterministic and device.type == "cuda":
        # cuBLAS needs a fixed workspace for reproducible matmuls; it must be set before use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def _instantiate_dataset(cfg: DictConfig) -> DatasetPair:
    options = OmegaConf.to_container(cfg.dataset, resolve=True)
    options.pop("name", None)  # the option's label, recorded as a param; not an argument
    try:
        return instantiate(options)
    except InstantiationException as exc:  # Hydra wraps the builder's own clear error
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        raise


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
    if mode not in MODES:
        raise ConfigError(f"bench.mode={mode}: choose one of {', '.join(MODES)}")
    if cfg.trainer.epochs < 1:
        raise ConfigError(f"trainer.epochs={cfg.trainer.epochs}: must be at least 1")
    if cfg.bench.warmup_batches < 0:
        raise ConfigError(f"bench.warmup_batches={cfg.bench.warmup_batches}: must be 0 or more")
    device = resolve_device(cfg.device.type)
    plan = plan_loader(cfg.loader, device=device)
    configure_determinism(cfg, device)

    seed = int(cfg.seed)
    data = _instantiate_dataset(cfg)
    preset = instantiate(cfg.transforms)
    train_set = TransformedDataset(data.train, preset.train, seed)
    val_set = TransformedDataset(data.val, preset.val, seed)

    torch.manual_seed(seed)  # model initialisation: the same weights for every loader setting
    model = instantiate(cfg.model, num_classes=data.num_classes).to(device)
    optimizer = instantiate(cfg.optim)(model.parameters())
    return Setup(
        device=device,
        plan=plan,
        data=data,
        model=model,
        optimizer=optimizer,
        train_loader=build_loader(train_set, plan, seed=seed, train=True),
        val_loader=build_loader(val_set, plan, seed=seed, train=False),
        mode=mode,
        channels_last=bool(cfg.model.get("channels_last", False)),
    )


def train(setup: Setup, cfg: DictConfig, tracker: tracking.Tracker) -> list[EpochStats]:
    """The measured epochs; metrics go to ``tracker`` once per epoch."""
    s = setup
    epochs: list[EpochStats] = []
    before_epoch = getattr(s.data.train, "before_epoch", None)
    cached_batch = None
    for epoch in range(cfg.trainer.epochs):
        s.train_loader.sampler.set_epoch(epoch)
        if before_epoch is not None:
            before_epoch(epoch)  # e.g. drop the files from the page cache: a really cold read
        n_batches = len(s.train_loader)
        progress = Progress(n_batches, f"epoch {epoch}", enabled=cfg.trainer.progress)
        common = dict(epoch=epoch, warmup_batches=cfg.bench.warmup_batches, progress=progress)
        try:
            if s.mode == "train":
                stats = train_one_epoch(
                    s.model,
                    s.train_loader,
                    s.optimizer,
                    s.device,
                    channels_last=s.channels_last,
                    **common,
                )
            elif s.mode == "loader_only":
                stats = iterate_loader(s.train_loader, s.device, **common)
            else:  # model_only: one batch, fetched outside the clock, replayed on the device
                if cached_batch is None:
                    t0 = time.perf_counter()
                    cached_batch = next(iter(s.train_loader))
                    fetch_s = time.perf_counter() - t0
                stats = train_cached_batch(
                    s.model,
                    cached_batch,
                    s.optimizer,
                    s.device,
                    steps=n_batches,
                    channels_last=s.channels_last,
                    **common,
                )
            if s.mode == "model_only":  # the real cost of getting a batch, not a list lookup
                stats.first_batch_s = fetch_s
        finally:
            progress.close()
        if s.mode == "train":  # outside the clock: evaluation is not training time
            stats.val_loss, stats.val_acc = evaluate(
                s.model, s.val_loader, s.device, channels_last=s.channels_last
            )
        tracker.log_metrics(epoch_metrics(stats), step=epoch)
        log.info(
            "epoch %d: %.0f samples/s, waiting for data %.0f%% of the time%s",
            epoch,
            stats.samples_per_s,
            100 * stats.data_wait_fraction,
            f", train loss {stats.loss:.4f}, val acc {stats.val_acc:.3f}"
            if s.mode == "train"
            else "",
        )
        epochs.append(stats)
    return epochs


def _params(cfg: DictConfig, setup: Setup | None) -> dict[str, Any]:
    params = tracking.flatten(OmegaConf.to_container(cfg, resolve=True))
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
        tags["loaderbench.output_dir"] = launch.output_dir
    if setup is not None:
        tags |= env_tags(setup.device)
        tags |= {f"effective.{k}.reason": why for k, why in setup.plan.reasons.items()}
    return tags


def run(
    cfg: DictConfig, tracker: tracking.Tracker | None = None, launch: Launch | None = None
) -> float:
    """Run one job; return its summary samples/s (the objective a Hydra sweeper can use).

    In a multirun a failing job is recorded as FAILED (with ``error.txt``) and returns NaN, so
    the sweep goes on; in a single run the error propagates after it is recorded.
    """
    wall0 = time.perf_counter()
    launch = launch or Launch.from_hydra()
    tracker = tracker or make_tracker(cfg, launch)
    name = run_name(cfg, launch.overrides)
    setup: Setup | None = None
    started = False
    try:
        setup = prepare(cfg)
        tracker.start(run_name=name, params=_params(cfg, setup), tags=_tags(launch, setup))
        started = True
        tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), keys.CONFIG_ARTIFACT)
        if setup.data.stats:
            tracker.log_metrics({f"data/{k}": v for k, v in setup.data.stats.items()})
        with ResourceMonitor(cfg.bench.memory_interval_s) as monitor:
            epochs = train(setup, cfg, tracker)
        summary = summary_metrics(epochs, time.perf_counter() - wall0)
        summary |= resource_metrics(monitor)
        tracker.log_metrics(summary)
        tracker.end("FINISHED")
        report_summary(summary, tracker, data=setup.data)
        return summary[keys.SUMMARY_SAMPLES_PER_S]
    except KeyboardInterrupt:
        if started:
            tracker.end("KILLED")
        raise
    except Exception as exc:
        error = traceback.format_exc()
        if launch.output_dir:  # the sweep callback counts failures from these files too
            Path(launch.output_dir, keys.ERROR_ARTIFACT).write_text(error)
        if launch.multirun and not started:
            # Record the broken combination so the sweep report lists it.
            tracker.start(run_name=name, params=_params(cfg, setup), tags=_tags(launch, setup))
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


def resource_metrics(monitor: ResourceMonitor) -> dict[str, float]:
    u = monitor.usage
    metrics = {
        keys.PEAK_RSS: u.peak_rss_mb,
        keys.PEAK_PSS: u.peak_pss_mb,
        keys.PEAK_USS: u.peak_uss_mb,
        keys.WORKERS_PSS: u.peak_workers_pss_mb,
        keys.PEAK_SHM: u.peak_shm_mb,
        keys.CPU_UTILIZATION: u.cpu_utilization,
    }
    return {k: v for k, v in metrics.items() if not math.isnan(v)}


def report_summary(summary: dict[str, float], tracker: tracking.Tracker, data: DatasetPair) -> None:
    get = summary.get
    line = (
        f"{get(keys.SUMMARY_SAMPLES_PER_S):.0f} samples/s "
        f"(steady {get(keys.SUMMARY_STEADY):.0f}), "
        f"waiting for data {get(keys.SUMMARY_DATA_WAIT):.0%} of training time, "
        f"first batch after {get(keys.SUMMARY_FIRST_BATCH):.2f} s"
    )
    if keys.SUMMARY_VAL_ACC in summary:
        line += f", val acc {get(keys.SUMMARY_VAL_ACC):.3f} (chance {1 / data.num_classes:.3f})"
    log.info("%s, peak memory %.0f MB", line, get(keys.PEAK_RSS))
    log.info("recorded: %s", tracker.where())
