"""``train_one_epoch`` / ``evaluate``, the two ceiling passes, and :class:`EpochRunner`, which
picks the pass for ``bench.mode``. Plain code over torch objects: no Hydra, no MLflow; the
clocks come from :mod:`loaderbench.timing`. Batches are ``(images, labels, ids)`` (a user's
stream: ``(images, labels)``); :class:`SampleIds` counts them, the exactly-once check."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from loaderbench import keys
from loaderbench.exactly_once import SampleIds
from loaderbench.progress import Progress
from loaderbench.timing import EpochStats, TimedBatches, batch_size_of

if TYPE_CHECKING:  # types only: the step is built by the job
    from loaderbench.emulated import CpuStep, CudaStep

    Step = CpuStep | CudaStep

__all__ = ["EpochRunner", "Progress", "emulate_epoch", "evaluate", "train_one_epoch"]


def _to_device(
    batch: Any, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = batch[0], batch[1]  # batch[2], if there, holds the sample ids
    # non_blocking only helps from pinned memory; it is harmless otherwise.
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    epoch: int,
    warmup_batches: int = 0,
    max_batches: int | None = None,
    channels_last: bool = False,
    progress: Progress | None = None,
    ids: SampleIds | None = None,
) -> EpochStats:
    """One training pass (the first ``max_batches`` only, if set); loss and accuracy are summed
    on the device and read once at the end. ``ids``: count each batch's sample ids into it."""
    model.train()
    stats = EpochStats(epoch=epoch)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    start = time.perf_counter()
    batches = TimedBatches(
        loader, device, stats, warmup_batches=warmup_batches, max_batches=max_batches
    )
    for batch in batches:
        images, labels = _to_device(batch, device, channels_last)
        logits = model(images)
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * labels.shape[0]
        correct += (logits.detach().argmax(1) == labels).sum()
        if ids is not None:
            ids.add(batch)
        if progress is not None:
            progress.update(stats, start)
    stats.loss = loss_sum.item() / max(stats.samples, 1)
    stats.acc = correct.item() / max(stats.samples, 1)
    return stats if ids is None else ids.fill(stats)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    *,
    channels_last: bool = False,
    max_batches: int | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy over ``loader`` (its first ``max_batches``, if set)."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    for batch in itertools.islice(loader, max_batches):
        images, labels = _to_device(batch, device, channels_last)
        logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
        n += labels.shape[0]
    return loss_sum.item() / max(n, 1), correct.item() / max(n, 1)


def iterate_loader(
    loader: Iterable,
    device: torch.device,
    *,
    epoch: int,
    warmup_batches: int = 0,
    max_batches: int | None = None,
    progress: Progress | None = None,
    ids: SampleIds | None = None,
    step: Step | None = None,
) -> EpochStats:
    """The loader's ceiling: fetch every batch and move it to the device, no model.

    The copy is the "touch": it reads every byte (and, from pinned memory, is the transfer a
    training step would make), so lazily produced data cannot look free. With ``step``, each
    batch is then followed by an emulated step of T (:mod:`loaderbench.emulated`): the loader
    feeds an accelerator this machine may not have. The window edges drain the queued steps,
    so the epoch's wall time includes them.
    """
    stats = EpochStats(epoch=epoch)
    start = time.perf_counter()
    batches = TimedBatches(
        loader, device, stats, warmup_batches=warmup_batches, max_batches=max_batches,
        sync=step.drain if step is not None else None,
    )  # fmt: skip
    for batch in batches:
        _to_device(batch, device, channels_last=False)
        if step is not None:
            step(batch_size_of(batch))
        if ids is not None:
            ids.add(batch)
        if progress is not None:
            progress.update(stats, start)
    if step is not None:
        # waits[i] came before step i + 2; the first step after the warm-up's drain waited for it
        stats.step_waits = step.take_waits()[warmup_batches:]
    return stats if ids is None else ids.fill(stats)


def emulate_epoch(loader: Iterable, device: torch.device, step: Step, **kw: Any) -> EpochStats:
    """:func:`iterate_loader` with an emulated step after every batch."""
    return iterate_loader(loader, device, step=step, **kw)


def train_cached_batch(
    model: nn.Module,
    batch: Any,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    epoch: int,
    steps: int,
    warmup_batches: int = 0,
    max_batches: int | None = None,
    channels_last: bool = False,
    progress: Progress | None = None,
) -> EpochStats:
    """The compute ceiling: ``steps`` training steps on one batch already on the device."""
    images, labels = _to_device(batch, device, channels_last)
    return train_one_epoch(
        model,
        [(images, labels)] * steps,
        optimizer,
        device,
        epoch=epoch,
        warmup_batches=warmup_batches,
        max_batches=max_batches,
        channels_last=False,
        progress=progress,
    )


@dataclass
class EpochRunner:
    """One measured epoch in ``mode``, with what carries across epochs (model_only's batch).

    - ``train``: :func:`train_one_epoch`, then :func:`evaluate` outside the clock (evaluation is
      not training time; it is timed on its own as ``eval_s``);
    - ``loader_only``: :func:`iterate_loader`, the loader's ceiling;
    - ``model_only``: :func:`train_cached_batch` on one batch fetched once, outside the clock;
      its fetch time is reported as the first-batch latency (the real cost of a batch).
    - ``emulated``: :func:`emulate_epoch` with ``step``, an accelerator's step emulated.

    ``max_batches`` makes every epoch a probe: it stops after that many batches, and in
    ``train`` mode evaluates on that many validation batches at most (outside the clock, as
    always: a probe's accuracy is that of a cut epoch, on part of the validation set).

    ``sample_ids``: the training split's id space (its length); when set, train, emulated and
    loader_only count every epoch's ids (:class:`SampleIds`), kept as :attr:`ids` until the
    next epoch (a rank sums them with the other ranks').

    ``eval_model``: what evaluates, when it is not ``model`` (a rank trains through
    DistributedDataParallel and evaluates its own share with the plain module: no collective).
    """

    mode: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    train_loader: Any
    val_loader: Any
    channels_last: bool = False
    max_batches: int | None = None
    sample_ids: int | None = None
    step: Step | None = None  # emulated mode's step (loaderbench.emulated.make_step)
    eval_model: nn.Module | None = None
    ids: SampleIds | None = None
    _batch: Any = None
    _fetch_s: float = math.nan

    def __post_init__(self) -> None:
        if self.mode not in keys.ALL_MODES:
            raise ValueError(f"mode {self.mode!r}: choose one of {', '.join(keys.ALL_MODES)}")

    def run_epoch(
        self, epoch: int, *, warmup_batches: int = 0, progress: Progress | None = None
    ) -> EpochStats:
        common = dict(
            epoch=epoch,
            warmup_batches=warmup_batches,
            max_batches=self.max_batches,
            progress=progress,
        )
        ids = self.ids = SampleIds(self.sample_ids) if self.sample_ids else None
        if self.mode == "loader_only":
            return iterate_loader(self.train_loader, self.device, ids=ids, **common)
        if self.mode == keys.MODE_EMULATED:
            return emulate_epoch(self.train_loader, self.device, self.step, ids=ids, **common)
        if self.mode == "model_only":
            if self._batch is None:
                t0 = time.perf_counter()
                self._batch = next(iter(self.train_loader))
                self._fetch_s = time.perf_counter() - t0
            steps = len(self.train_loader)
            stats = train_cached_batch(
                self.model,
                self._batch,
                self.optimizer,
                self.device,
                steps=steps,
                channels_last=self.channels_last,
                **common,
            )
            stats.first_batch_s = self._fetch_s
            return stats
        stats = train_one_epoch(
            self.model,
            self.train_loader,
            self.optimizer,
            self.device,
            channels_last=self.channels_last,
            ids=ids,
            **common,
        )
        t0 = time.perf_counter()
        stats.val_loss, stats.val_acc = evaluate(
            self.eval_model or self.model,
            self.val_loader,
            self.device,
            channels_last=self.channels_last,
            max_batches=self.max_batches,
        )
        stats.eval_s = time.perf_counter() - t0
        return stats
