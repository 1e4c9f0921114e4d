"""The answer in a real browser: a sweep, then `mlflow ui` on its store (127.0.0.1), then the
links the sweep printed, loaded in headless Chromium. Skipped, with the reason, where Chromium
is missing (`.ci/run` installs it from the OS packages where it can).

Screenshots go to the test's temporary folder, or to $LOADERBENCH_UI_SHOTS when set (the
README's images: `LOADERBENCH_UI_SHOTS=docs/img pytest -m slow tests/test_ui.py`)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loaderbench import keys, store, ui
from tests.helpers import ROOT, MlflowServer, job_env

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(url: str, screenshot: Path | None = None) -> str:
    """The page's visible text once its scripts ran (and, with ``screenshot``, a PNG of it)."""
    base = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=1600,1000", "--virtual-time-budget=15000"]  # fmt: skip
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    if screenshot is not None:
        shot = subprocess.run(
            [*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120
        )
        assert shot.returncode == 0 and screenshot.stat().st_size > 0
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom.stdout, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")
def test_the_printed_links_show_the_answer_in_the_mlflow_ui(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = job_env()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "loader.num_workers=0,2",
         "dataset.size=256", "dataset.val_size=64", "dataset.image_size=32",
         "trainer.epochs=2", "trainer.progress=false",
         f"mlflow.tracking_uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    links = dict(re.findall(r"^\s+(runs|charts|compare): (http\S+)$", out, flags=re.M))
    assert set(links) == {"runs", "charts", "compare"}, out[-3000:]

    client = store.open_store(uri, must_exist=True)
    parent = client.get_run(store.latest_sweep(client))
    children = store.child_runs(client, parent)
    names = sorted(c.info.run_name for c in children)
    assert names == ["w0", "w2"]
    shots = Path(os.environ.get("LOADERBENCH_UI_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)

    server = MlflowServer(tmp_path, ui=uri).start()
    try:
        local = {k: v.replace(ui.LOCAL_UI, server.url) for k, v in links.items()}
        # The runs link: this sweep's children only, fastest first, the swept knob and the
        # throughput as columns, in the model-training part of the UI.
        runs = browse(local["runs"], shots / "mlflow-runs.png")
        assert "Model registry" in runs and "Evaluation runs" not in runs  # training, not GenAI
        assert all(name in runs for name in names)
        assert "loader.num_workers" in runs and keys.SUMMARY_SAMPLES_PER_S in runs
        assert "2 matching runs" in runs  # the parent and other sweeps are filtered out
        # The charts link: loaderbench's section of two charts (throughput per run, the swept
        # knob's parallel coordinates) above MLflow's generated ones. The charts themselves
        # render lazily, so the page text holds the sections, not always the charts' titles.
        charts = browse(local["charts"], shots / "mlflow-charts.png")
        assert "2 matching runs" in charts
        assert 0 <= charts.find("loaderbench (2)") < charts.find("throughput (")
        # The parent's page: its description holds the verdict and the call to paste.
        base = server.url + ui.runs_page(parent.info.experiment_id, parent.info.run_id)
        page = browse(base, shots / "mlflow-parent.png")
        verdict = parent.data.tags[keys.VERDICT_TAG]
        assert verdict.split(";")[0] in page and "DataLoader(" in page
        assert all(name in page for name in names)  # its child runs
        # A child's page: its one-line description with its headline figures.
        child = children[0]
        page = browse(server.url + ui.runs_page(child.info.experiment_id, child.info.run_id))
        assert child.data.tags[keys.NOTE_TAG].split(",")[0] in page
    finally:
        server.stop()
