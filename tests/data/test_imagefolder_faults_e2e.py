"""An image folder with a folder its user cannot read, and one with a symbolic link loop, as a
user types the run: one line naming the folder and the fix, exit 2; or, with
``dataset.on_error=skip``, the folder left out and counted. Tests run as root, and root reads
everything, so the unreadable folder is read by ``nobody`` (``setpriv``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.data.test_imagefolder_faults import image_folder
from tests.helpers import ROOT, job_env

pytestmark = pytest.mark.slow
RUN = [
    "dataset=imagefolder", "dataset.image_size=16", "dataset.val_fraction=0.25",
    "loader.batch_size=4", "trainer.epochs=1", "trainer.progress=false",
]  # fmt: skip
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _env(home: Path) -> dict[str, str]:
    return job_env() | {
        "HOME": str(home),
        "MPLCONFIGDIR": str(home / "mpl"),
    }  # nobody's: /nonexistent


def _run(prefix: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*prefix, sys.executable, str(ROOT / "run.py"), *RUN, *args],
        cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return proc


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")]


@pytest.fixture
def shared():
    """A folder ``nobody`` can reach (pytest's tmp_path is root's own): the images, readable by
    anyone, and a working folder it may write to."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to read as an unprivileged user")
    probe = [*AS_NOBODY, sys.executable, "-c", f"open({str(ROOT / 'run.py')!r})"]
    if subprocess.run(probe, capture_output=True, cwd="/").returncode != 0:
        pytest.skip(
            f"nobody cannot run {sys.executable} or read {ROOT}: a checkout in a folder "
            "only its owner may enter (mktemp -d makes one); clone it where others can read"
        )
    folder = Path(tempfile.mkdtemp(prefix="lb-unreadable-"))
    folder.chmod(0o755)
    work = folder / "work"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    try:
        yield folder, work
    finally:
        for path in folder.rglob("*"):  # what chmod took away, so it can be removed
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(folder)


def test_an_unreadable_folder_is_named_or_skipped_and_counted(shared):
    folder, work = shared
    root = image_folder(folder / "imgs", n=4, classes=("a", "b", "c"))
    locked = root / "c"
    locked.chmod(0)
    proc = _run(AS_NOBODY, [f"dataset.root={root}", "mlflow.enabled=false"], work)
    assert proc.returncode == 2
    (line,) = _errors(proc)
    assert line == (
        f"error: {locked}: cannot read the folder (permission denied); chmod -R u+rX it, or "
        "pass dataset.on_error=skip to leave it out"
    )
    uri = f"sqlite:///{work}/mlflow.db"
    args = [f"dataset.root={root}", "dataset.on_error=skip", f"mlflow.tracking_uri={uri}"]
    proc = _run(AS_NOBODY, args, work)
    assert proc.returncode == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("loaderbench").experiment_id])
    assert run.data.metrics["data/skipped_dirs"] == 1
    assert run.data.params["data.num_classes"] == "2"  # c left no training image: dropped


def test_a_symlink_loop_is_one_line_and_exit_2(tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "b" / "again").symlink_to(root)
    proc = _run([], [f"dataset.root={root}", "mlflow.enabled=false"], tmp_path)
    assert proc.returncode == 2
    (line,) = _errors(proc)
    assert line.startswith(f"error: {root / 'b' / 'again'}: a symbolic link loop")
    assert "Traceback" not in proc.stdout + proc.stderr
