"""loaderbench as a user installs it: the wheel (configs inside, the console scripts, the Hydra
plugin), run from an empty folder and from a project of one's own; ``loaderbench-config``; the
Python entry. The slow tests build a wheel from a clean copy of the checkout and install it into
a fresh venv that borrows this venv's packages."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from loaderbench import __version__, api, keys, packaged_configs, store
from tests.helpers import CONF, ROOT, compose_config

SMALL = ["trainer.epochs=1", "dataset.size=128"]  # the issue's own command lines


# --- fast: the package list, the config files ----------------------------------------------
def test_pyproject_lists_every_package_under_src_and_maps_conf():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(folder.relative_to(ROOT / "src").parts)
        for folder in (ROOT / "src").rglob("*")
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
    }
    found.add("hydra_plugins")  # a namespace package: its plugins' folders hold the code
    listed = set(setuptools["packages"])
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == {"loaderbench.conf"}
    assert setuptools["package-dir"] == {"": "src", "loaderbench.conf": "conf"}


def test_the_configs_are_this_checkouts_conf():
    assert packaged_configs.config_dir() == CONF


def test_in_an_editable_install_of_this_checkout_pkg_conf_is_its_conf():
    from importlib import metadata

    try:
        url = json.loads(metadata.distribution("loaderbench").read_text("direct_url.json") or "{}")
    except metadata.PackageNotFoundError:
        url = {}
    if url.get("url") != ROOT.as_uri() or importlib.util.find_spec("loaderbench.conf") is None:
        pytest.skip("loaderbench is not installed from this checkout with its current pyproject")
    spec = importlib.util.find_spec("loaderbench.conf")
    assert Path(spec.origin).resolve() == CONF / "__init__.py"
    from hydra import compose, initialize_config_module

    from loaderbench.config import register_configs

    register_configs()
    with initialize_config_module("loaderbench.conf", version_base="1.3"):
        assert compose("config", overrides=["dataset=custom"]).dataset.name == "custom"


def every_option() -> list[str]:
    return sorted(p.relative_to(CONF).with_suffix("").as_posix() for p in CONF.rglob("*.yaml"))


def listed_options(text: str) -> set[str]:
    """``group/option`` for every option a ``loaderbench-config list`` names."""
    names = set()
    for line in text.splitlines()[1:-1]:
        group, *options = line.split()
        names |= {f"{group}/{o}" for o in options} if options[0] != "(the" else {group}
    return names


def test_loaderbench_config_lists_every_packaged_option(capsys):
    assert packaged_configs.main(["list"]) == 0
    assert listed_options(capsys.readouterr().out) == set(every_option())


def test_a_copied_option_is_found_through_the_search_path(tmp_path, capsys):
    dest = tmp_path / "conf" / "dataset" / "mine.yaml"
    assert packaged_configs.main(["copy", "dataset/shapes", str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"select it with: loaderbench --config-dir {tmp_path / 'conf'} dataset=mine" in out
    assert dest.read_text() == (CONF / "dataset" / "shapes.yaml").read_text()
    dest.write_text(dest.read_text().replace("name: shapes", "name: mine"))
    cfg = compose_config([f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "dataset=mine"])
    assert cfg.dataset.name == "mine"

    assert packaged_configs.main(["copy", "dataset/shapes", str(dest)]) == 2  # no overwrite
    assert "pass --force" in capsys.readouterr().err
    assert packaged_configs.main(["copy", "dataset/nonesuch", str(tmp_path)]) == 2
    assert "loaderbench-config list shows them" in capsys.readouterr().err
    assert packaged_configs.main(["copy", "config", str(tmp_path)]) == 0  # into a folder
    assert (tmp_path / "config.yaml").read_text() == (CONF / "config.yaml").read_text()


def test_the_api_claims_an_output_folder_of_its_own_unless_given_one(tmp_path):
    a, set_a = api.output_dir(["trainer.epochs=1"], False, tmp_path)
    b, _ = api.output_dir([], False, tmp_path)
    assert a != b and a.is_dir() and b.is_dir() and a.parent.parent == tmp_path / "outputs/runs"
    assert set_a == [f"hydra.run.dir={a}", f"hydra.sweep.dir={a}"]  # a preset may make a sweep
    given, none = api.output_dir(["hydra.sweep.dir=out/here"], True, tmp_path)
    assert (given, none) == (tmp_path / "out" / "here", [])
    assert api._quoted("/a b/it's") == "'/a b/it\\'s'"


def test_version_flag_names_loaderbench(monkeypatch, capsys):
    from loaderbench import main

    monkeypatch.setattr(sys, "argv", ["loaderbench", "--version"])
    main.main()
    assert capsys.readouterr().out.startswith(f"loaderbench {__version__} (Hydra ")


# --- slow: the wheel, installed -------------------------------------------------------------
class Venv:
    """A fresh venv holding only the wheel, with this venv's packages through a ``.pth`` file
    (a plain path line: the folder's own ``.pth`` files, among them the editable install of
    this checkout, are not processed)."""

    def __init__(self, root: Path, wheel: Path):
        self.root, self.bin = root, root / "bin"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        self.site = Path(self.python_says(purelib))
        borrowed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
        (self.site / "zz_borrowed.pth").write_text("\n".join(sorted(borrowed)) + "\n")
        # --ignore-installed: this venv's own loaderbench (the editable install) is visible
        # through the .pth file, and pip would keep it rather than install the same version
        pip = [self.bin / "python", "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed"]
        self.run(*pip, wheel)

    @property
    def env(self) -> dict[str, str]:
        drop = {"PYTHONPATH", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV"}
        env = {k: v for k, v in os.environ.items() if k not in drop}
        return env | {"PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}"}

    def run(self, *cmd, cwd: Path | None = None, timeout: float = 900) -> str:
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=cwd, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")  # shown when a test fails
        assert proc.returncode == 0, f"{cmd} exited {proc.returncode}"
        return proc.stdout + proc.stderr

    def python_says(self, code: str, cwd: Path | None = None) -> str:
        return self.run(self.bin / "python", "-c", code, cwd=cwd).strip().splitlines()[-1]

    def files(self) -> set[Path]:
        return {p for p in self.root.rglob("*") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Venv:
    src = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "conf"):  # a clean copy: no build/ or egg-info left by an earlier build
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    wheels = tmp_path_factory.mktemp("wheels")
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, "-q", "-w", str(wheels)], check=True, cwd=src)
    (wheel,) = wheels.glob("loaderbench-*.whl")
    return Venv(tmp_path_factory.mktemp("venv") / "v", wheel)


@pytest.mark.slow
def test_the_wheel_holds_the_package_its_configs_and_the_plugin(venv):
    where = json.loads(venv.python_says(
        "import json, loaderbench, loaderbench.conf, hydra_plugins.loaderbench_tune as t; "
        "print(json.dumps([loaderbench.__file__, loaderbench.conf.__file__, t.__file__]))"
    ))  # fmt: skip
    for path in where:
        assert Path(path).is_relative_to(venv.site), f"{path} is not the wheel's"
    installed = venv.site / "loaderbench" / "conf"
    assert sorted(p.relative_to(installed) for p in installed.rglob("*.yaml")) == sorted(
        p.relative_to(CONF) for p in CONF.rglob("*.yaml")
    )
    sweepers = venv.python_says(
        "from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; "
        "print(sorted(p.__name__ for p in Plugins.instance().discover(Sweeper)))"
    )
    assert "TuneSweeper" in sweepers
    assert venv.python_says("import loaderbench; print(loaderbench.__version__)") == __version__
    version = venv.run("loaderbench", "--version")
    assert version.startswith(f"loaderbench {__version__}")


@pytest.mark.slow
def test_help_lists_the_groups_and_loaderbench_config_every_option(venv, tmp_path):
    text = venv.run("loaderbench", "--help", cwd=tmp_path)
    assert "== Config groups ==" in text
    for group in sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"):
        names = sorted(o.stem for o in (CONF / group).glob("*.yaml"))
        if names:
            assert f"\n{group}: {', '.join(names)}\n" in text
    assert listed_options(venv.run("loaderbench-config", "list")) == set(every_option())
    dest = "conf/dataset/my_data.yaml"
    venv.run("loaderbench-config", "copy", "dataset/custom", dest, cwd=tmp_path)
    assert (tmp_path / dest).read_text() == (CONF / "dataset" / "custom.yaml").read_text()
    assert list(tmp_path.iterdir()) == [tmp_path / "conf"]  # --help and copy wrote nothing else


@pytest.mark.slow
def test_a_run_and_a_sweep_from_an_empty_folder_record_there(venv, tmp_path):
    before = venv.files()
    venv.run("loaderbench", *SMALL, cwd=tmp_path)
    out = venv.run("loaderbench", "-m", "loader.num_workers=0,1", *SMALL, cwd=tmp_path)
    db = tmp_path / "outputs" / "mlflow.db"
    assert db.is_file() and f"sqlite:///{db}" in out
    client = store.open_store(f"sqlite:///{db}", must_exist=True)
    parent = store.sweep_parent(client, store.latest_sweep(client))
    children = store.child_runs(client, parent)
    assert parent.info.status == "FINISHED" and keys.VERDICT_TAG in parent.data.tags
    assert sorted(c.info.run_name for c in children) == ["w0", "w1"]
    assert {c.info.status for c in children} == {"FINISHED"}
    (single,) = [
        r for r in client.search_runs([parent.info.experiment_id])
        if r.info.run_id != parent.info.run_id and keys.PARENT_TAG not in r.data.tags
    ]  # fmt: skip
    for r in (single, *children):
        assert r.data.tags[keys.VERSION_TAG] == __version__
        assert r.data.tags[keys.OUTPUT_DIR_TAG].startswith(str(tmp_path / "outputs"))
    assert {"mlartifacts", "runs", "sweeps"} <= {p.name for p in (tmp_path / "outputs").iterdir()}
    assert venv.files() == before  # nothing written into the venv (site-packages included)


@pytest.mark.slow
def test_the_cache_goes_to_the_launch_folder(venv, tmp_path):
    args = ["dataset=tensor", "dataset.storage=mmap", "dataset.val_size=32", *SMALL]
    venv.run("loaderbench", *args, "mlflow.enabled=false", cwd=tmp_path)
    assert list((tmp_path / "outputs" / "cache").glob("*.npy"))
    assert not list(venv.root.rglob("*.npy"))


@pytest.mark.slow
def test_the_example_project_runs_from_its_own_folder(venv, tmp_path):
    project = tmp_path / "mypkg"
    shutil.copytree(ROOT / "examples" / "mypkg", project, ignore=shutil.ignore_patterns("outputs"))
    data = ["--out", "outputs/data/mypkg", "--count", "64", "--val-count", "32"]
    venv.run(venv.bin / "python", "-m", "mypkg.make_data", *data, cwd=project)
    # spawned workers must find the project's package too: they re-import it by name
    args = ["--config-dir", "conf", "dataset=packed_jpegs", "model=net", "trainer.epochs=1"]
    spawn = ["loader.num_workers=1", "loader.multiprocessing_context=spawn"]
    venv.run("loaderbench", *args, *spawn, cwd=project)
    client = store.open_store(f"sqlite:///{project / 'outputs' / 'mlflow.db'}", must_exist=True)
    (run,) = client.search_runs([client.get_experiment_by_name("loaderbench").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset.name"] == "packed_jpegs"
    assert run.data.params["model._target_"] == "mypkg.models.Net"
    assert run.data.params["dataset.kwargs.root"] == str(project / "outputs" / "data" / "mypkg")
    assert run.data.params["data.train_size"] == "64"


@pytest.mark.slow
def test_the_tune_sweeper_runs_from_the_wheel(venv, tmp_path):
    args = ["sweep=tune", "tune.max_workers=1", "tune.probe_batches=4", "tune.contexts=[fork]"]
    args += ["tune.backends=false", "tune.cost_share=null"]  # a grid of 3: nothing to cap
    venv.run("loaderbench", *args, *SMALL, "dataset.val_size=32", cwd=tmp_path)
    client = store.open_store(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}", must_exist=True)
    parent = store.sweep_parent(client, store.latest_sweep(client))
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics[keys.TUNE_TRIALS] == len(store.child_runs(client, parent)) > 1
    assert parent.data.tags[keys.RECOMMENDATION_TAG].startswith("DataLoader(")


@pytest.mark.slow
def test_the_api_runs_a_sweep_through_the_command_and_reads_it_back(venv, tmp_path):
    code = (
        "import json; from loaderbench import api; "
        f"r = api.sweep(['loader.num_workers=0,1', *{SMALL!r}], echo=False); "
        "print(json.dumps([r.parent_id, r.run_ids, r.verdict, r.winner, r.tracking_uri]))"
    )
    parent_id, run_ids, verdict, winner, uri = json.loads(venv.python_says(code, cwd=tmp_path))
    assert uri == f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    client = store.open_store(uri, must_exist=True)
    parent = store.sweep_parent(client, parent_id)
    assert len(run_ids) == 2
    assert run_ids == [c.info.run_id for c in store.child_runs(client, parent)]
    assert (verdict, winner) == (
        parent.data.tags[keys.VERDICT_TAG], parent.data.tags[keys.WINNER_TAG]
    )  # fmt: skip
