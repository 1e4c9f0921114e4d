"""A job's measured work: ranks × a loop over a loader.

:func:`build` makes, from the config alone, what one rank needs (device, datasets, loaders,
model, optimizer), checking everything that can fail on bad input; :func:`train` runs the
measured epochs over its loader; :func:`measure` is the one place where a job becomes
processes and loaders. With one rank that is this process, over the DataLoaders :func:`build`
made. With ``trainer.ranks=N`` it is N ranks started by torch's elastic launcher
(:mod:`loaderbench.ranks`), each building its own dataset and loader from the config and
running :func:`epochs` over its share, rank 0 gathering the ranks' figures for this process to
record (:func:`record_epoch`). :mod:`loaderbench.experiment` opens and records the run around it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from loaderbench import exactly_once, keys, tracking
from loaderbench.config import ConfigError
from loaderbench.data import (
    DatasetPair,
    LoaderFailure,
    LoaderPlan,
    augmentation,
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
from loaderbench.devices import configure_determinism, resolve_device, set_torch_threads
from loaderbench.emulated import StepTime, make_step, resolve_step
from loaderbench.loop import EpochRunner, Progress
from loaderbench.models import build_model, check_model
from loaderbench.probe import record_probe
from loaderbench.ranks.plan import RankPlan, plan_ranks
from loaderbench.stopping import stopped_with_workers
from loaderbench.timing import EpochStats, epoch_metrics

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """Everything a rank needs, built and validated before its run is opened."""

    device: torch.device
    plan: LoaderPlan
    data: DatasetPair
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: Any
    val_loader: Any
    mode: str
    channels_last: bool
    batch_bytes: int = 0  # one training batch, estimated from one sample (0: no worker processes)
    augmentation: str = ""  # the AUGMENTATION_TAG: whose random draws any loader repeats
    delivery: list[str] = field(default_factory=list)  # epochs not delivered exactly once
    step: StepTime | None = None  # emulated mode's T (loaderbench.emulated)
    ranks: RankPlan = field(default_factory=lambda: RankPlan(1, None, None, 1))
    due: dict[int, int] = field(default_factory=dict)  # epoch -> samples due over all ranks

    def epoch_samples(self, epoch: int) -> int:
        """The training samples due in ``epoch``: over all ranks, what they reported."""
        return self.due[epoch] if epoch in self.due else epoch_samples(self.train_loader, epoch)


def instantiate_dataset(cfg: DictConfig) -> DatasetPair:
    options = OmegaConf.to_container(cfg.dataset, resolve=True)
    options.pop("name", None)  # the option's label, recorded as a param; not an argument
    try:
        return instantiate(options)
    except InstantiationException as exc:  # Hydra wraps the builder's own clear error
        if isinstance(exc.__cause__, (ConfigError, LoaderFailure)):  # e.g. a bad sample
            raise exc.__cause__ from None
        raise


def build(cfg: DictConfig, launch_dir: str | None = None) -> Setup:
    """Device, data, loaders, model and optimizer from the config (checked: a value that cannot
    work raises ConfigError naming it), and in emulated mode the step's time T (``launch_dir``:
    where a relative tracking store is, for ``bench.step_from``)."""
    device = resolve_device(cfg.device.type)
    plan = plan_loader(cfg.loader, device=device)
    ranks = plan_ranks(cfg, device, plan.num_workers)
    plan.effective |= ranks.effective()
    configure_determinism(cfg.trainer.deterministic, device)
    threads = cfg.trainer.get("torch_threads")
    # several ranks: each rank's threads (trainer.torch_threads, else the cores ÷ the ranks)
    plan.effective["torch_threads"] = set_torch_threads(ranks.threads or threads)
    if threads is None:
        plan.reasons["torch_threads"] = (
            "trainer.torch_threads=null: torch's default"
            if ranks.ranks == 1
            else f"trainer.torch_threads=null: {ranks.cores} usable cores ÷ {ranks.ranks} ranks"
        )
    step = None
    if cfg.bench.mode == keys.MODE_EMULATED:
        uri = cfg.mlflow.get("tracking_uri")
        step = resolve_step(cfg.bench, plan.batch_size, uri, launch_dir or os.getcwd())
        how = "torch.cuda._sleep on the current stream" if device.type == "cuda" else "a sleep"
        plan.effective["step_ms"] = step.ms
        plan.reasons["step_ms"] = (
            f"{step.source}; emulated on {device.type} as {how} (no core, no GIL), "
            f"step_sync={cfg.bench.step_sync}"
        )

    seed = int(cfg.seed)
    data = instantiate_dataset(cfg)
    preset = instantiate(cfg.transforms)
    train_set = transformed(
        data.train,
        preset.train,
        seed,
        random=getattr(preset, "random", True),
        seeded=getattr(preset, "seeded", False),
    )
    val_set = transformed(data.val, preset.val, seed, random=False)
    fit_plan(plan, train_set)
    context, workers = plan.effective["multiprocessing_context"], plan.num_workers
    check_picklable({"train": train_set, "val": val_set}, context, workers)

    # One sample, fetched here, sizes the batches workers will pass through /dev/shm and
    # tells the model its input.
    sample = first_sample(train_set)
    processes = plan.num_workers and plan.backend == keys.DATALOADER  # threads share no memory
    batch_bytes = sample_bytes(sample) * plan.batch_size if processes else 0
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
    train_loader = build_loader(train_set, plan, seed=seed, train=True, deterministic=det)
    record_probe(plan, cfg.bench, train_loader)
    return Setup(
        device=device,
        plan=plan,
        data=data,
        model=model,
        optimizer=optimizer,
        train_loader=train_loader,
        val_loader=build_loader(val_set, plan, seed=seed, train=False, deterministic=det),
        batch_bytes=batch_bytes,
        augmentation=augmentation(train_set, plan.backend, data.user_class),
        mode=cfg.bench.mode,
        channels_last=bool(cfg.model.get("channels_last", False)),
        step=step,
        ranks=ranks,
    )


def data_stats(setup: Setup) -> dict[str, float]:
    """What the dataset and loader say about themselves before the first epoch (``data/*``)."""
    stats = {f"data/{k}": v for k, v in setup.data.stats.items()}
    if (idle := getattr(setup.train_loader, "idle_workers", None)) is not None:
        stats[keys.IDLE_WORKERS] = idle
        if idle:
            log.warning("%d of %d workers have no shard to read", idle, setup.plan.num_workers)
    return stats


RunRanks = Callable[[DictConfig, Setup, tracking.Tracker], list[EpochStats]]


def measure(
    cfg: DictConfig, setup: Setup, tracker: tracking.Tracker, *, ranks: RunRanks | None = None
) -> list[EpochStats]:
    """The job's measured epochs, their metrics to ``tracker``: one rank in this process, over
    ``setup``'s loaders, or ``trainer.ranks`` ranks through ``ranks`` (see the module's
    docstring). ``ranks`` is :func:`loaderbench.ranks.agent.run_ranks`, passed in by the caller:
    it runs this module's functions in each rank, so this module cannot import it."""
    if setup.ranks.ranks > 1:
        if ranks is None:
            raise ValueError("a job of several ranks: pass ranks=loaderbench.ranks.agent.run_ranks")
        return ranks(cfg, setup, tracker)
    return train(setup, cfg, tracker)


def runner_of(setup: Setup, cfg: DictConfig, **kwargs: Any) -> EpochRunner:
    """The epoch runner over ``setup``'s loaders (``kwargs``: a rank's model and evaluator)."""
    s = setup
    options: dict[str, Any] = (
        dict(
            model=s.model,
            channels_last=s.channels_last,
            max_batches=s.plan.effective.get("probe_batches"),  # record_probe's: None, or a probe
            sample_ids=len(s.data.train),
            step=make_step(s.step, cfg.bench.step_sync, s.device) if s.step else None,
        )
        | kwargs
    )
    return EpochRunner(
        s.mode,
        optimizer=s.optimizer,
        device=s.device,
        train_loader=s.train_loader,
        val_loader=s.val_loader,
        **options,
    )


def epochs(
    setup: Setup,
    cfg: DictConfig,
    runner: EpochRunner,
    around: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> Iterator[EpochStats]:
    """The measured epochs, one at a time, with torch's raw words for a known loader fault
    turned into its cause and fix. ``around``: what each epoch runs in (a rank's DDP join)."""
    s = setup
    before_epoch = getattr(s.data.train, "before_epoch", None)
    for epoch in range(cfg.trainer.epochs):
        set_epoch(s.train_loader, epoch)
        if before_epoch is not None:
            before_epoch(epoch)  # e.g. drop the files from the page cache: a really cold read
        total = min(len(s.train_loader), runner.max_batches or len(s.train_loader))
        progress = Progress(total, f"epoch {epoch}", enabled=cfg.trainer.progress)
        try:
            with around():
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
        yield stats


def record_epoch(
    setup: Setup,
    tracker: tracking.Tracker,
    stats: EpochStats,
    due: int,
    extra: dict[str, float] | None = None,
) -> None:
    """One epoch's metrics (and ``extra`` ones) to ``tracker``, its exactly-once check against
    ``due`` samples, and its line in the log."""
    s = setup
    tracker.log_metrics(epoch_metrics(stats) | (extra or {}), step=stats.epoch)
    if problem := exactly_once.check(stats, due):
        log.warning("not exactly once: %s", problem)
        s.delivery.append(problem)
    log.info(
        "epoch %d: %.0f samples/s, waiting for data %.0f%% of the time%s%s%s",
        stats.epoch,
        stats.samples_per_s,
        100 * stats.data_wait_fraction,
        f", train loss {stats.loss:.4f}" if s.mode == "train" else "",
        f", the step waited {stats.step_wait_ms:.2f} ms a step" if stats.step_waits else "",
        f", val acc {stats.val_acc:.3f}" if not math.isnan(stats.val_acc) else "",
    )


def train(setup: Setup, cfg: DictConfig, tracker: tracking.Tracker) -> list[EpochStats]:
    """The measured epochs in this process; metrics go to ``tracker`` once per epoch."""
    runner = runner_of(setup, cfg)
    out: list[EpochStats] = []
    for stats in epochs(setup, cfg, runner):
        # a probe cuts its epochs short: what it fetched is what was due
        due = stats.samples if runner.max_batches else setup.epoch_samples(stats.epoch)
        record_epoch(setup, tracker, stats, due)
        out.append(stats)
    return out


def close(setup: Setup) -> list[Any]:
    """End the loaders' workers (a failed epoch must not keep them alive into the next job);
    return the loader threads that outlived it (stuck in ``__getitem__``)."""
    return close_loader(setup.train_loader) + close_loader(setup.val_loader)
