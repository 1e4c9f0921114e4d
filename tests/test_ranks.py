"""Several ranks per job, without starting a process: the epoch split as DistributedSampler
splits it, every sample exactly once across the ranks (the padding counted apart), tar shards
split by rank, and what the launching process makes of the ranks' figures."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DistributedSampler

from loaderbench import exactly_once, keys
from loaderbench.data import EpochSampler, sample_seed
from loaderbench.data.seeding import rank_of_world
from loaderbench.data.shards.streams import plan_epoch
from loaderbench.exactly_once import SampleIds
from loaderbench.timing import EpochStats, epoch_metrics

SPLITS = [(10, 2), (10, 4), (64, 2), (65, 2), (7, 3), (3, 4)]  # (samples, ranks)


def shares(n: int, world: int, *, shuffle: bool = True, epoch: int = 0) -> list[list[int]]:
    out = []
    for rank in range(world):
        sampler = EpochSampler(n, shuffle=shuffle, seed=0, rank=rank, world=world)
        sampler.set_epoch(epoch)
        out.append([i for _, i in sampler])
    return out


def counted(n: int, delivered: list[list[int]], planned: torch.Tensor | None) -> EpochStats:
    """The ranks' id counts summed, as the ranks sum them after each epoch."""
    total = torch.zeros(n, dtype=torch.int32)
    for ids in delivered:
        counter = SampleIds(n)
        if ids:
            counter.add((None, None, torch.tensor(ids)))
        total += counter.counts
    return SampleIds.summed(total, 0, planned).fill(EpochStats(epoch=0))


def test_no_process_group_is_one_rank_and_its_order_is_unchanged():
    assert rank_of_world() == (0, 1)
    sampler = EpochSampler(50, shuffle=True, seed=3)
    g = torch.Generator().manual_seed(sample_seed(3, 0, -1))
    assert [i for _, i in sampler] == torch.randperm(50, generator=g).tolist()
    assert len(sampler) == 50 and sampler.padding == 0 and sampler.planned_counts(0) is None


@pytest.mark.parametrize(("n", "world"), SPLITS)
def test_the_split_is_distributed_samplers_over_the_same_order(n, world):
    dataset = list(range(n))
    for rank, share in enumerate(shares(n, world, shuffle=False)):
        theirs = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
        assert share == list(theirs)
    whole = EpochSampler(n, shuffle=True, seed=0, rank=0, world=1)
    order = [i for _, i in whole]
    merged = [i for step in zip(*shares(n, world), strict=True) for i in step]
    assert merged[:n] == order  # rank r takes every world-th key of the one seeded order


@pytest.mark.parametrize(("n", "world"), SPLITS)
def test_every_sample_arrives_exactly_once_across_ranks_and_the_padding_is_counted(n, world):
    parts = shares(n, world)
    assert len({len(p) for p in parts}) == 1  # every rank takes as many steps
    sampler = EpochSampler(n, shuffle=True, seed=0, rank=0, world=world)
    stats = counted(n, parts, sampler.planned_counts(0))
    pad = -(-n // world) * world - n
    assert sampler.padding == pad
    assert (stats.samples_seen, stats.duplicate_samples, stats.missing_samples) == (n + pad, 0, 0)
    assert stats.padded_samples == pad
    assert exactly_once.check(stats, expected=sum(map(len, parts))) is None
    assert epoch_metrics(stats)[keys.PADDED_SAMPLES] == pad


def test_a_rank_that_delivers_its_share_twice_is_not_exactly_once():
    n, world = 10, 4
    parts = shares(n, world)
    sampler = EpochSampler(n, shuffle=True, seed=0, rank=0, world=world)
    stats = counted(n, [*parts, parts[1]], sampler.planned_counts(0))
    assert stats.duplicate_samples == len(parts[1]) and stats.padded_samples == 2
    problem = exactly_once.check(stats, expected=sum(map(len, parts)))
    assert problem and "3 duplicates, 2 padding" in problem


def test_drop_last_per_rank_misses_only_what_it_drops():
    n, world, batch = 10, 4, 2  # shares of 3: each rank drops its last sample
    parts = [p[: len(p) // batch * batch] for p in shares(n, world)]
    sampler = EpochSampler(n, shuffle=True, seed=0, rank=0, world=world)
    stats = counted(n, parts, sampler.planned_counts(0))
    assert stats.duplicate_samples == 0 and stats.samples_seen == 8
    assert exactly_once.check(stats, expected=8) is None
    assert exactly_once.check(stats, expected=10) is not None  # two of what was due missing


def test_one_rank_logs_no_padding_and_counts_as_before():
    counter = SampleIds(4)
    counter.add((None, None, torch.tensor([0, 1, 2, 3, 3])))
    stats = counter.fill(EpochStats(epoch=0))
    assert stats.duplicate_samples == 1 and math.isnan(stats.padded_samples)
    assert keys.PADDED_SAMPLES not in epoch_metrics(stats)


def test_evaluation_shares_repeat_nothing():
    n, world = 10, 4
    seen = []
    for rank in range(world):
        sampler = EpochSampler(n, shuffle=False, seed=0, rank=rank, world=world, even=False)
        assert len(sampler) == len(list(sampler))
        seen += [i for _, i in sampler]
    assert sorted(seen) == list(range(n))


@pytest.mark.parametrize("world", [2, 3])
def test_shards_are_split_by_rank_before_the_workers_split_them(world):
    sizes = [20, 20, 20, 20, 16]
    plans = [
        plan_epoch(sizes, streams=4, batch_size=8, shuffle=True, drop_last=False, seed=0,
                   epoch=1, rank=r, world=world)
        for r in range(world)
    ]  # fmt: skip
    shards = sorted(s for p in plans for stream in p.streams for s in stream)
    assert shards == list(range(len(sizes)))  # every shard read by exactly one rank
    assert sum(p.delivered for p in plans) == sum(sizes)


def test_shard_streams_keep_the_rank_they_were_built_in(tmp_path):
    from loaderbench.data import TransformedDataset
    from loaderbench.data.shards import ShardStreams, make_shards

    pair = make_shards(cache_dir=str(tmp_path), size=40, val_size=8, image_size=8, per_shard=10,
                       streams=4, shuffle_buffer=0, seed=0)  # fmt: skip
    dataset = TransformedDataset(pair.train, None, seed=0)
    streams = [
        ShardStreams(dataset, batch_size=5, shuffle=False, drop_last=False, seed=0, rank=r,
                     world=2)
        for r in range(2)
    ]  # fmt: skip
    # what a spawned worker plans, with no process group of its own: its rank's half
    assert [s.plan().streams for s in streams] == [[[0], [2]], [[1], [3]]]
    assert sum(s.plan().delivered for s in streams) == 40
