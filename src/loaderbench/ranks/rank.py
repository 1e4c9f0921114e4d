"""One rank of a multi-rank job, in its own process (what the elastic launcher starts).

Nothing but the config comes in (and the queue its figures go out by): the rank builds its
device, dataset, loader and model from the config, as a single-process job does
(:func:`loaderbench.job.build`), with its share of each epoch (the sampler reads the process
group; see :class:`~loaderbench.data.seeding.EpochSampler`). It trains through
DistributedDataParallel, evaluates its share of the validation split with the plain module, sums
the epoch's sample-id counts with the other ranks' and gathers everyone's figures on rank 0,
which puts them on the queue for the launching process to record. A rank that fails puts its
error there (the launching process names the rank); a rank stopped by a signal joins its
loader's workers and says so; either way it exits non-zero, and the launcher stops the others.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
import warnings
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from loaderbench import job
from loaderbench.cores import rank_threads
from loaderbench.data import EpochSampler
from loaderbench.devices import resolve_device
from loaderbench.exactly_once import SampleIds
from loaderbench.loop import EpochRunner
from loaderbench.provenance import cpu_cores
from loaderbench.ranks.merge import RankEpoch
from loaderbench.ranks.plan import BACKENDS
from loaderbench.stopping import STOP_SIGNALS, install_signal_handlers, signal_name
from loaderbench.timing import EpochStats

# What torch says once per rank: the job's own line about the cores comes from the launcher.
TORCH_CORES_WARNING = "This DataLoader will create"
# Errors that only say a peer went away: another rank's failure is the cause.
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def main(config: dict[str, Any], results: Any) -> None:
    """The rank's entry: ``config`` is the job's resolved config, ``results`` the queue to the
    launching process."""
    rank = int(os.environ["RANK"])
    # A spawned process defaults to spawn for its own children: the loader's workers start as
    # the platform's default (fork on Linux), as in a single process and under torchrun.
    multiprocessing.set_start_method(multiprocessing.get_all_start_methods()[0], force=True)
    install_signal_handlers()  # a stop signal raises here too, so the workers are joined
    logging.basicConfig(level=logging.ERROR, format=f"rank {rank}: %(message)s", force=True)
    warnings.filterwarnings("ignore", message=TORCH_CORES_WARNING)
    try:
        run(OmegaConf.create(config), rank, results)
    except KeyboardInterrupt as stop:  # the launcher's shutdown, or a signal to this rank only
        _leaving()
        results.put(("stopped", rank, time.time(), signal_name(stop)))
        sys.exit(128 + getattr(stop, "signum", 2))
    except Exception as exc:
        _leaving()
        results.put(("error", rank, time.time(), failure(exc)))
        sys.exit(1)


def _leaving() -> None:
    """On the way out, the loaders' workers are joined as the error's frames are freed: the
    launcher's stop signal (it stops every rank once one fails) must not cut that short."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def failure(exc: BaseException) -> dict[str, Any]:
    """What the launching process needs to name this rank's error."""
    text = str(exc)
    return {
        "kind": type(exc).__name__,
        "message": text,
        "traceback": "".join(traceback.format_exception(exc)),
        # a peer's death seen from here: not the cause
        "peer": isinstance(exc, dist.DistError) or any(p in text for p in PEER_GONE),
    }


def run(cfg: Any, rank: int, results: Any) -> None:
    world, local = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = resolve_device(cfg.device.type)
    if device.type == "cuda":  # one device per rank, before anything touches CUDA
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    torch.set_num_threads(rank_threads(cfg.trainer.get("torch_threads"), world, cpu_cores()))
    dist.init_process_group(
        BACKENDS[device.type], device_id=device if device.type == "cuda" else None
    )
    if rank != 0:
        cfg.trainer.progress = False  # one bar, rank 0's
    setup = job.build(cfg)  # this rank's share: the sampler reads the process group
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(
            setup.model, device_ids=[local] if device.type == "cuda" else None
        )
        runner = job.runner_of(setup, cfg, model=ddp, eval_model=setup.model)
        sampler = getattr(setup.train_loader, "sampler", None)
        split = isinstance(sampler, EpochSampler)
        # A stream (tar shards) may give the ranks unequal batch counts: DDP's join lets a rank
        # that ran out shadow the others' all-reduces. An even split needs no extra collective.
        around = nullcontext if split else ddp.join
        for stats in job.epochs(setup, cfg, runner, around=around):
            sum_ids(runner, stats, sampler if split else None, device)
            due = stats.samples if runner.max_batches else setup.epoch_samples(stats.epoch)
            mine = RankEpoch(rank, stats, due, val_samples=share(setup.val_loader))
            everyone: list[Any] = [None] * world
            dist.all_gather_object(everyone, mine)
            if rank == 0:
                results.put(("epoch", everyone))
    finally:
        job.close(setup)
    dist.destroy_process_group()


def share(loader: Any) -> int:
    """The samples of a split this rank holds (1 when its loader cannot say: equal weights)."""
    try:
        return len(loader.sampler)
    except (AttributeError, TypeError):
        return 1


def sum_ids(
    runner: EpochRunner, stats: EpochStats, sampler: EpochSampler | None, device: torch.device
) -> None:
    """The epoch's id counts summed over the ranks, so the exactly-once check sees the whole
    epoch (the padding the split planned counted apart)."""
    ids = runner.ids
    if ids is None or stats.samples_seen != stats.samples_seen:  # not counted (model_only)
        return
    both = torch.cat([ids.counts, torch.tensor([ids.unnamed], dtype=torch.int32)])
    on = both.to(device) if device.type == "cuda" else both  # nccl reduces device tensors
    dist.all_reduce(on)
    both = on.cpu()
    planned = sampler.planned_counts(stats.epoch) if sampler is not None else None
    SampleIds.summed(both[:-1], int(both[-1]), planned).fill(stats)
