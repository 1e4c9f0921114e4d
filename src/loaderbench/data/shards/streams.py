"""Tar shards streamed by an IterableDataset, split by worker and rank, in an order that does not
depend on ``num_workers``.

The classic streaming loader gives each worker its own shards and lets it batch what it reads;
the DataLoader then takes one batch from each worker in turn. The order the model sees depends
on the worker count, and a dataset that forgets to split its shards by worker yields every
sample once per worker. Here the epoch's order is defined first, from ``(seed, epoch)`` alone
(:func:`plan_epoch`):

1. the shards are permuted (when shuffling) and dealt to ``streams`` streams: shard ``p`` of
   the permutation to stream ``p % streams``; each stream reads its shards front to back;
2. each stream passes its samples through a shuffle buffer seeded by ``(seed, epoch, stream)``
   and cuts them into batches (its last batch may be short, or dropped with ``drop_last``);
3. the epoch is the streams' batches taken in turn: a batch of stream 0, of stream 1, ...,
   skipping streams that have run out.

Worker ``w`` of ``W`` owns streams ``w, w + W, ...`` and reads only their shards. The DataLoader
asks its workers in turn (skipping a worker for good once it has stopped), so each worker
works out, from the same plan, what the DataLoader will ask of it (:func:`worker_ticks`): the
next batch of the epoch when that batch is its own, else an empty placeholder (``None``) that
:class:`~loaderbench.data.loader.dataloader.StreamLoader` drops. With ``streams`` a multiple
of ``W`` there are no placeholders until the streams' ends; workers beyond the number of streams
own none and stop at once (they sit idle: ``data/idle_workers``). The batches reach the model
in the planned order, so training is bit-identical for every ``num_workers`` (given the same
``streams`` and ``shuffle_buffer``, which define the order, as ``batch_size`` does).

``split_by_worker=false`` is the bug on purpose: every worker reads every stream, so every batch
arrives once per worker. Ranks (``torch.distributed``, when initialised) take streams
``rank, rank + world, ...`` before the workers split them; the rank is read when the dataset is
built, in the rank's own process (a spawned worker has no process group to ask).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from loaderbench.data.seeding import TransformedDataset, collate_batch, rank_of_world, sample_seed
from loaderbench.data.storage import open_stream

_SHARD_ORDER, _BUFFER = -2, -1000  # sample_seed "indices" of the shard permutation, buffers


@dataclass
class EpochPlan:
    """One epoch of one rank: its streams (shard indices in read order), their batch counts,
    and the epoch's batches in delivery order as ``(stream, k)``."""

    streams: list[list[int]]
    samples: list[int]
    batches: list[int]
    order: list[tuple[int, int]]

    @property
    def delivered(self) -> int:
        """Samples the epoch delivers (all, less the short batches ``drop_last`` drops)."""
        return sum(self.samples)


def plan_epoch(
    shard_sizes: list[int],
    *,
    streams: int,
    batch_size: int,
    shuffle: bool,
    drop_last: bool,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
) -> EpochPlan:
    """The epoch's order, a pure function of its arguments (see the module docstring)."""
    n = len(shard_sizes)
    if shuffle:
        g = torch.Generator().manual_seed(sample_seed(seed, epoch, _SHARD_ORDER))
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    dealt: list[list[int]] = [[] for _ in range(min(streams, n))]
    for p, shard in enumerate(order):
        dealt[p % len(dealt)].append(shard)
    mine = [s for j, s in enumerate(dealt) if j % world == rank]
    counts = [sum(shard_sizes[i] for i in s) for s in mine]
    batches = [c // batch_size if drop_last else -(-c // batch_size) for c in counts]
    samples = [min(c, b * batch_size) for c, b in zip(counts, batches, strict=True)]
    turns: list[tuple[int, int]] = []
    for k in range(max(batches, default=0)):
        turns += [(j, k) for j, b in enumerate(batches) if k < b]
    return EpochPlan(mine, samples, batches, turns)


def worker_ticks(
    plan: EpochPlan, num_workers: int, worker: int, *, split: bool = True
) -> list[tuple[int, int] | None]:
    """What the DataLoader will take from ``worker``, turn by turn: a planned batch, or None
    (a placeholder) when the epoch's next batch belongs to another worker. After its last item
    the worker stops; the DataLoader then skips it, and so does this simulation."""
    if not split:
        return list(plan.order)  # every worker delivers every batch: the classic bug
    remaining = Counter(j % num_workers for j, _ in plan.order)
    active, pos, g, mine = list(range(num_workers)), 0, 0, []
    while g < len(plan.order):
        w = active[pos]
        if remaining[w] == 0:  # it stops here: its turn passes to the next worker
            active.pop(pos)
            pos %= len(active)
            continue
        j, k = plan.order[g]
        item = None
        if j % num_workers == w:
            item, g = (j, k), g + 1
            remaining[w] -= 1
        if w == worker:
            mine.append(item)
        pos = (pos + 1) % len(active)
    return mine


class ShardStreams(IterableDataset):
    """The training split of a :class:`~loaderbench.data.shards.dataset.ShardSet` as batches
    ``(images, labels, ids)``, made in the worker that reads them.

    The epoch is set through a shared-memory tensor, so persistent workers (which keep their own
    copy of the dataset) see it too.
    """

    def __init__(
        self,
        dataset: TransformedDataset,
        *,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        rank: int | None = None,
        world: int | None = None,
    ):
        self.dataset, self.shards = dataset, dataset.base
        if rank is None or world is None:
            rank, world = rank_of_world()
        self.rank, self.world = rank, world
        self.batch_size, self.shuffle, self.drop_last, self.seed = (
            batch_size, shuffle, drop_last, seed,
        )  # fmt: skip
        self.epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch[0] = epoch

    def plan(self, epoch: int | None = None) -> EpochPlan:
        return plan_epoch(
            self.shards.sizes,
            streams=self.shards.streams,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            seed=self.seed,
            epoch=int(self.epoch[0]) if epoch is None else epoch,
            rank=self.rank,
            world=self.world,
        )

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        epoch = int(self.epoch[0])
        plan = self.plan(epoch)
        ticks = worker_ticks(plan, workers, worker, split=self.shards.split_by_worker)
        readers: dict[int, Iterator[Any]] = {}
        for item in ticks:
            if item is None:
                yield None
                continue
            j = item[0]
            if j not in readers:
                readers[j] = self._batches(plan.streams[j], j, epoch)
            yield next(readers[j])

    def _samples(self, shard_indices: list[int], stream: int, epoch: int) -> Iterator[tuple]:
        """``(id, label, image bytes)`` of the stream's shards, through the shuffle buffer."""
        s, size = self.shards, self.shards.shuffle_buffer if self.shuffle else 0
        rng = random.Random(sample_seed(self.seed, epoch, _BUFFER - stream))
        buffer: list[tuple] = []
        for si in shard_indices:
            shard, start = s.shards[si], s.starts[si]
            with open_stream(shard.path, s.read_latency_s) as f:
                for i in range(len(shard)):
                    f.seek(int(shard.offsets[i]))
                    item = (start + i, int(shard.labels[i]), f.read(int(shard.sizes[i])))
                    if len(buffer) < size:
                        buffer.append(item)
                        continue
                    if size:
                        r = rng.randrange(size)
                        item, buffer[r] = buffer[r], item
                    yield item
        rng.shuffle(buffer)
        yield from buffer

    def _batches(self, shard_indices: list[int], stream: int, epoch: int) -> Iterator[Any]:
        batch: list[tuple] = []
        for sid, label, data in self._samples(shard_indices, stream, epoch):
            image = self.dataset.apply(self.shards.decode(data), epoch, sid)
            batch.append((image, label, sid))
            if len(batch) == self.batch_size:
                yield collate_batch(batch)  # in a worker: the images straight into shared memory
                batch = []
        if batch and not self.drop_last:
            yield collate_batch(batch)
