"""A stored config names code; reproducing it imports that code. What is loaderbench's own is
matched on module boundaries, the rest is listed and refused without --trust."""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from loaderbench import keys, reproduce, store, trust
from tests.helpers import compose_config

EXAMPLE = [
    "dataset=custom",
    "dataset.target=mypkg.data.PackedJpegs",
    "dataset.val_target=mypkg.data.PackedJpegs",
    "model=custom",
    "model._target_=mypkg.models.Net",
]


def test_names_are_matched_on_module_boundaries():
    assert trust.is_allowed("torch.optim.SGD") and trust.is_allowed("loaderbench.models.SmallCNN")
    assert trust.is_allowed("hydra_plugins.loaderbench_tune.TuneSweeper")
    assert not trust.is_allowed("torchx.evil") and not trust.is_allowed("hydra_plugins.other.X")
    assert not trust.is_allowed("loaderbench_extra.x") and not trust.is_allowed("os.system")


def test_the_packaged_configs_are_trusted_a_users_package_is_listed():
    tree = OmegaConf.to_container(compose_config(), resolve=False)
    names = dict(trust.importable_names(tree))
    assert names["model._target_"].startswith("loaderbench.")
    assert any(k.startswith("optim.") for k in names) and trust.untrusted(tree) == []
    tree = OmegaConf.to_container(compose_config(EXAMPLE), resolve=False)
    tree["hydra"] = {"callbacks": {"c": {"_target_": "evil.Callback"}}, "launcher": {}}
    assert trust.untrusted(tree) == [
        ("dataset.target", "mypkg.data.PackedJpegs"),
        ("dataset.val_target", "mypkg.data.PackedJpegs"),
        ("model._target_", "mypkg.models.Net"),
        ("hydra.callbacks.c._target_", "evil.Callback"),
    ]


def test_reproduce_refuses_before_importing_what_it_does_not_trust(sqlite_uri, capsys):
    client, exp = store.open_experiment(sqlite_uri, "e")
    run = client.create_run(exp, run_name="mine").info.run_id
    config = OmegaConf.to_yaml(compose_config(EXAMPLE), resolve=False)
    client.log_text(run, config, keys.CONFIG_ARTIFACT)
    sys.modules.pop("mypkg", None)
    assert reproduce.main([run, "--tracking-uri", sqlite_uri]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the stored config of {run} names code outside loaderbench")
    assert f"  dataset.target=mypkg.data.PackedJpegs (run {run})" in err
    assert f"  model._target_=mypkg.models.Net (run {run})" in err
    assert "--trust" in err.splitlines()[-1]
    assert "mypkg" not in sys.modules  # nothing it names was imported
    assert [r.info.run_id for r in client.search_runs([exp])] == [run]  # nothing was run
