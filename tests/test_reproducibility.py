"""The same seed gives bit-identical losses whatever the loader settings, and a recorded run can
be re-run from the store with the same result (issue 5).

Augmentation is on and there are two epochs throughout: the random crop of a sample depends on
(seed, epoch, index), so this is where worker-dependent randomness would show.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from loaderbench import keys, store
from loaderbench.experiment import Launch, run
from loaderbench.reproduce import ENV_TAGS, REPRODUCES_TAG, ReproduceError, compare_env, reproduce
from tests.helpers import (
    ROOT,
    SMALL,
    compose_config,
    job_env,
    load_script,
    loader_batches,
    run_in_memory,
    same_batches,
)

# 4 batches of 32 per epoch: two for each of two workers. Colour jitter costs ~5 ms per image.
AUGMENT = ("transforms=augment", "trainer.epochs=2", "dataset.size=128", "dataset.val_size=32")
HISTORIES = ("loss/train", "acc/val")


def histories(cfg) -> dict[str, list[tuple[int | None, float]]]:
    tracker = run_in_memory(cfg)
    return {key: tracker.metrics[key] for key in HISTORIES}


@pytest.fixture(scope="module")
def reference() -> dict[str, list[tuple[int | None, float]]]:
    """num_workers=0: every sample transformed in the main process."""
    found = histories(compose_config([*SMALL, "mlflow.enabled=false", *AUGMENT]))
    assert [step for step, _ in found["loss/train"]] == [0, 1]
    return found


@pytest.fixture(scope="module")
def reference_batches() -> list[tuple]:
    """What num_workers=0 delivers over both epochs: images, labels and ids."""
    return loader_batches(compose_config([*SMALL, "mlflow.enabled=false", *AUGMENT]))


@pytest.mark.parametrize(
    "overrides",
    [
        ["loader.num_workers=2", "loader.multiprocessing_context=fork"],
        # One spawned worker checks the start method; persistent: it is spawned once, not per
        # epoch. A spawn imports torch again (~5 s here): slow, beside the sweep that trains
        # under spawn.
        pytest.param(
            [
                "loader.num_workers=1",
                "loader.multiprocessing_context=spawn",
                "loader.persistent_workers=true",
            ],
            marks=pytest.mark.slow,
            id="w1-spawn-persist",
        ),
        ["loader.num_workers=2", "loader.persistent_workers=true", "loader.prefetch_factor=4"],
    ],
    ids=["w2-fork", None, "w2-persist-pf4"],
)
def test_loader_settings_do_not_change_the_batches(small_cfg, reference_batches, overrides):
    """Training sees what the loader delivers: the same batches, bit for bit, in the same order
    (the same model and seed then train the same; the slow sweep test trains both ways)."""
    assert same_batches(loader_batches(small_cfg(*AUGMENT, *overrides)), reference_batches)


def test_another_seed_changes_the_batches(small_cfg, reference_batches):
    """Negative control: the comparison above can fail."""
    assert not same_batches(loader_batches(small_cfg(*AUGMENT, "seed=1")), reference_batches)


def test_same_config_twice_gives_identical_metrics(small_cfg, reference):
    assert histories(small_cfg(*AUGMENT)) == reference


def test_another_seed_changes_the_losses(small_cfg, reference):
    """Negative control: the comparison above can fail."""
    other = histories(small_cfg(*AUGMENT, "seed=1"))
    assert other["loss/train"] != reference["loss/train"]


def only_run(client: MlflowClient, **tags: str):
    exp = client.get_experiment_by_name("loaderbench")
    runs = client.search_runs([exp.experiment_id])
    return [r for r in runs if all(r.data.tags.get(k) == v for k, v in tags.items())]


def test_reproduce_round_trip_and_tampering(small_cfg, sqlite_uri, capsys, monkeypatch):
    # The original is the one FINISHED job of a sweep (plus a FAILED one, which is skipped), so
    # reproducing the parent exercises the sweep path without training a second job.
    client, exp_id = store.open_experiment(sqlite_uri, "loaderbench")
    parent_id = client.create_run(exp_id, tags={keys.ROLE_TAG: "sweep"}).info.run_id
    failed = client.create_run(exp_id, tags={keys.PARENT_TAG: parent_id}).info.run_id
    client.set_terminated(failed, "FAILED")
    monkeypatch.setenv(keys.PARENT_ENV, parent_id)
    cfg = small_cfg(*AUGMENT, "mlflow.enabled=true", f"mlflow.tracking_uri={sqlite_uri}")
    run(cfg, launch=Launch(overrides=list(AUGMENT), multirun=True))
    monkeypatch.delenv(keys.PARENT_ENV)
    (original,) = only_run(client, **{keys.PARENT_TAG: parent_id, keys.ROLE_TAG: "job"})
    original_id = original.info.run_id

    (result,) = reproduce(parent_id, sqlite_uri)
    assert result.original_id == original_id and result.matched, result.lines()
    assert result.throughput  # listed, whatever the values
    assert not result.warnings  # same software, same machine
    new = client.get_run(result.new_id)
    assert new.data.tags[REPRODUCES_TAG] == original_id
    assert keys.PARENT_TAG not in new.data.tags  # a standalone run
    assert new.info.run_name == original.info.run_name
    assert new.info.experiment_id == original.info.experiment_id

    # Tamper: a second value at epoch 0. MLflow keeps both; the comparison must see it.
    client.log_metric(original_id, "loss/train", 123.0, step=0)
    assert load_script("reproduce").main([original_id, "--tracking-uri", sqlite_uri]) == 1
    out = capsys.readouterr().out
    assert "loss/train epoch 0" in out and "123.0" in out
    assert out.rstrip().endswith("mismatch")
    assert len(only_run(client, **{REPRODUCES_TAG: original_id})) == 2


def test_environment_drift_is_a_warning_naming_the_tag():
    same = {key: "1" for key in ENV_TAGS}
    assert compare_env(same, dict(same)) == []
    (warning,) = compare_env(same | {"env.torch": "2.0.0"}, same)
    assert warning.startswith("env.torch was 2.0.0, now 1") and "same software" in warning
    assert compare_env({}, same)[0].startswith("env.torch was unrecorded")


def test_unreproducible_runs_are_a_one_line_error(sqlite_uri, tmp_path, capsys):
    cli = load_script("reproduce")
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    assert cli.main(["0" * 32, "--tracking-uri", missing]) == 2
    assert "no tracking store" in capsys.readouterr().err

    client, exp_id = store.open_experiment(sqlite_uri, "loaderbench")
    bare = client.create_run(exp_id).info.run_id  # a run without config.yaml
    assert cli.main([bare, "--tracking-uri", sqlite_uri]) == 2
    err = capsys.readouterr().err
    assert "no config.yaml" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["f" * 32, "--tracking-uri", sqlite_uri]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(ReproduceError, match="not found"):
        reproduce("f" * 32, sqlite_uri)


@pytest.mark.slow
def test_sweep_over_workers_and_start_methods_is_identical_and_reproducible(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = job_env()
    cmd = [
        sys.executable, "run.py", "-m", "loader.num_workers=0,2",
        "loader.multiprocessing_context=fork,spawn", "transforms=augment", "trainer.epochs=2",
        "dataset.size=256", "dataset.val_size=64", "dataset.image_size=32",
        "trainer.progress=false", f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")  # shown when the test fails
    assert proc.returncode == 0

    client = MlflowClient(tracking_uri=uri)
    (parent,) = only_run(client, **{keys.ROLE_TAG: "sweep"})
    children = only_run(client, **{keys.PARENT_TAG: parent.info.run_id})
    assert len(children) == 4  # w0 with fork and with spawn: normalised, yet two runs
    assert {c.info.status for c in children} == {"FINISHED"}
    for key in HISTORIES:
        seen = {
            tuple(sorted((m.step, m.value) for m in client.get_metric_history(c.info.run_id, key)))
            for c in children
        }
        assert len(seen) == 1, (key, seen)
        assert [step for step, _ in next(iter(seen))] == [0, 1]
    assert parent.data.tags[keys.REPRO_TAG] == "identical"

    child = next(c for c in children if c.data.params["loader.num_workers"] == "2")
    proc = subprocess.run(
        [sys.executable, "scripts/reproduce.py", child.info.run_id, "--tracking-uri", uri],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
    assert proc.returncode == 0
    assert proc.stdout.rstrip().endswith("match")
