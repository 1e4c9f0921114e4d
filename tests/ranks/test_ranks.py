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


# --- the ranks' figures as the job's, and the checks before any rank starts -------------------


def rank_epoch(rank: int, samples: int, epoch_s: float, wait_s: float, loss: float, val_acc: float):
    from loaderbench.ranks.merge import RankEpoch

    stats = EpochStats(epoch=0, samples=samples, batches=samples // 8, epoch_s=epoch_s,
                       data_wait_s=wait_s, first_batch_s=0.1 * (rank + 1), loss=loss, acc=0.5,
                       val_loss=1.0, val_acc=val_acc, samples_seen=2 * samples,
                       duplicate_samples=0, missing_samples=0, padded_samples=1)  # fmt: skip
    stats.marks = [(epoch_s / 2, samples // 2), (epoch_s, samples)]
    return RankEpoch(rank, stats, due=samples, val_samples=10 + rank)


def test_the_job_is_all_ranks_samples_over_rank_0s_epoch():
    from loaderbench.ranks.merge import merge, rank_metrics, slowest_rank

    reports = [rank_epoch(0, 64, 2.0, 0.5, 1.0, 0.5), rank_epoch(1, 64, 2.5, 1.5, 2.0, 0.25)]
    job = merge(reports)
    assert job.samples == 128 and job.epoch_s == 2.0 and job.samples_per_s == 64
    assert job.loss == 1.5 and job.data_wait_s == 1.0 and job.first_batch_s == 0.2
    assert job.val_acc == pytest.approx((10 * 0.5 + 11 * 0.25) / 21)
    assert (job.samples_seen, job.padded_samples) == (128, 1)  # summed already: rank 0's
    assert job.marks[-1] == (2.0, 128)
    assert rank_metrics(reports) == {"rank/0/data_wait_fraction": 0.25,
                                     "rank/1/data_wait_fraction": 0.6}  # fmt: skip
    assert slowest_rank([reports, reports]) == 1


def test_bad_ranks_are_one_line_naming_the_key(small_cfg):
    from loaderbench.config import ConfigError
    from loaderbench.experiment import prepare
    from loaderbench.ranks.plan import plan_ranks

    with pytest.raises(ConfigError, match=r"^trainer.ranks=0: must be at least 1"):
        prepare(small_cfg("trainer.ranks=0"))
    with pytest.raises(ConfigError, match=r"^trainer.ranks=2: device=mps has one device"):
        plan_ranks(small_cfg("trainer.ranks=2"), torch.device("mps"), workers=0)


def test_more_ranks_than_cuda_devices_is_refused(monkeypatch):
    from loaderbench.config import ConfigError
    from loaderbench.ranks.plan import plan_ranks
    from tests.helpers import compose_config

    cfg = compose_config(["trainer.ranks=3"])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"trainer.ranks=3: one rank per CUDA device, and torch "
                       r"sees 2 here; trainer.ranks=2 at most"):  # fmt: skip
        plan_ranks(cfg, torch.device("cuda"), workers=0)


def test_a_slurm_job_must_give_each_rank_a_core(monkeypatch):
    from loaderbench.config import ConfigError
    from loaderbench.ranks import plan
    from tests.helpers import compose_config

    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setattr(plan, "cpu_cores", lambda: 2)
    with pytest.raises(ConfigError, match="hydra.launcher.cpus_per_task=4"):
        plan.plan_ranks(compose_config(["trainer.ranks=4"]), torch.device("cpu"), workers=0)


def test_ranks_are_planned_and_recorded(monkeypatch):
    from loaderbench.ranks import plan
    from tests.helpers import compose_config

    monkeypatch.setattr(plan, "cpu_cores", lambda: 16)
    cfg = compose_config(["trainer.ranks=4", "loader.num_workers=2"])
    ranks = plan.plan_ranks(cfg, torch.device("cpu"), workers=2)
    assert ranks.effective() == {"ranks": 4, "dist_backend": "gloo", "torch_threads": 4}
    assert ranks.warning is None  # 4 × (2 + 1) = 12 of 16
    one = plan.plan_ranks(compose_config([]), torch.device("cpu"), workers=2)
    assert one.effective() == {"ranks": 1, "dist_backend": None}


def test_too_many_processes_for_the_cores_is_one_line_with_the_numbers():
    from loaderbench import cores

    line = cores.oversubscribed(2, 2, 2)
    assert line.startswith("2 ranks × (2 workers + 1) = 6 processes on 2 usable cores")
    assert "\n" not in line
    assert cores.oversubscribed(4, 2, 16) is None
    assert "loader threads share its process" in cores.oversubscribed(4, 8, 2, "threads")
    assert (
        cores.explain(2, 2, 2)
        == "2 ranks × 2 workers on 2 cores: the workers take the ranks' cores"
    )
    assert cores.explain(2, 0, 2) == ""
    per = cores.per_rank("DataLoader(dataset, num_workers=2)", 4, 2, 16)
    assert per == "per rank: `DataLoader(dataset, num_workers=2)`; 4 ranks use 12 of 16 cores"
    assert cores.rank_threads(None, 4, 16) == 4 and cores.rank_threads(3, 4, 16) == 3
    assert cores.rank_threads(None, 4, 2) == 1


def test_a_run_of_several_ranks_is_named_for_them():
    from loaderbench.naming import run_name
    from tests.helpers import compose_config

    cfg = compose_config(["trainer.ranks=2", "loader.num_workers=1"])
    assert run_name(cfg, ["trainer.ranks", "loader.num_workers"]) == "ddp2-w1"
    assert run_name(cfg) == "w1-ddp2"
    assert run_name(compose_config([])) == "w0"


def test_the_report_names_the_setting_per_rank_and_why_the_cores_decide():
    from loaderbench.report import render
    from loaderbench.report.analysis import analyze
    from tests.helpers import child

    def run(name: str, sps: float, ranks: int, loss: list[float]):
        params = {keys.RANKS_PARAM: str(ranks)}
        row = child(name, sps, params=params, loss=loss, noise=0.01)
        row.name = f"ddp{ranks}-{name}"
        row.tags = {keys.CPU_AFFINITY_TAG: "2"}
        return row

    rows = [run("w0", 500, 1, [1.0]), run("w2", 400, 1, [1.0]),
            run("w0", 600, 2, [2.0]), run("w2", 900, 2, [2.0])]  # fmt: skip
    a = analyze("sweep", rows)
    snippet = "DataLoader(dataset, num_workers=2, multiprocessing_context='fork')"
    assert a.pick.runs[0].name == "ddp2-w2" and a.recommendation == snippet
    assert a.verdict.endswith(f"Per rank: `{snippet}`; 2 ranks use 6 of 2 cores.")
    assert a.reproducibility == "identical"  # compared within each number of ranks only
    assert a.by_ranks == [
        "1 rank: ddp1-w0 at 500 samples/s (`DataLoader(dataset)`)",
        f"2 ranks: ddp2-w2 at 900 samples/s (per rank: `{snippet}`; 2 ranks use 6 of 2 cores)",
    ]
    assert "ddp2-w2: 2 ranks × 2 workers on 2 cores: the workers take the ranks' cores" in a.why
    report = render.markdown(a)
    assert f"# per rank (2 ranks use 6 of 2 cores)\n{snippet}" in report
    assert "- 2 ranks: ddp2-w2" in report


def test_tune_searches_workers_per_rank(monkeypatch):
    from loaderbench import tune, tune_space
    from tests.helpers import compose_config

    monkeypatch.setattr(tune_space, "cpu_cores", lambda: 16)
    one = tune.build_space(compose_config(["sweep=tune"]), {}, accelerator=False)
    four = tune.build_space(compose_config(["sweep=tune", "trainer.ranks=4"]), {}, False)
    assert one.workers == list(range(33)) and four.workers == list(range(9))  # 0 to 2 × 16 / 4


def test_loader_threads_take_their_ranks_share(monkeypatch):
    pytest.importorskip("torchdata.nodes")
    from loaderbench.config import LoaderConfig
    from loaderbench.data import TransformedDataset, plan_loader, seeding
    from loaderbench.data.loader.threads import ThreadLoader
    from tests.user_datasets import Tensors

    monkeypatch.setattr(seeding, "rank_of_world", lambda: (1, 2))  # rank 1 of 2
    cfg = LoaderConfig(batch_size=4, num_workers=2, backend="threads")
    plan = plan_loader(cfg, device=torch.device("cpu"))
    dataset = TransformedDataset(Tensors(n=10), None, seed=0)
    train = ThreadLoader(dataset, plan, seed=0, train=True)
    val = ThreadLoader(dataset, plan, seed=0, train=False)
    assert len(train.sampler) == 5 and len(train) == 2 and train.epoch_samples(0) == 5
    assert [i for _, i in val.sampler] == [1, 3, 5, 7, 9]  # val: its share, nothing repeated
