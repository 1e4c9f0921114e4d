"""Where results go: a small Tracker interface, an in-memory tracker for tests, and MLflow.

Metric keys come from :mod:`loaderbench.keys`. mlflow is imported
inside methods only: ``import mlflow`` costs ~3 s, and spawned DataLoader workers re-import the
main module. The MLflow tracker talks to the store through ``MlflowClient`` with explicit run
ids, never the fluent ``mlflow.start_run`` global: a sweep's parent and its in-process jobs
must not share an "active run".
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from loaderbench import keys
from loaderbench.config import ConfigError
from loaderbench.timing import EpochStats, steady_samples_per_s, throughput_interval

log = logging.getLogger(__name__)


def epoch_metrics(stats: EpochStats) -> dict[str, float]:
    """Per-epoch metrics (step = epoch). Loss/accuracy only when a model was trained."""
    metrics = {
        keys.SAMPLES_PER_S: stats.samples_per_s,
        keys.STEADY_SAMPLES_PER_S: stats.steady_samples_per_s,
        keys.EPOCH_S: stats.epoch_s,
        keys.DATA_WAIT_S: stats.data_wait_s,
        keys.COMPUTE_S: stats.compute_s,
        keys.WARMUP_S: stats.warmup_s,
        keys.EVAL_S: stats.eval_s,
        keys.DATA_WAIT_FRACTION: stats.data_wait_fraction,
    }
    if not math.isnan(stats.loss):
        metrics |= {keys.LOSS_TRAIN: stats.loss, keys.ACC_TRAIN: stats.acc}
    if not math.isnan(stats.val_acc):
        metrics |= {keys.LOSS_VAL: stats.val_loss, keys.ACC_VAL: stats.val_acc}
    return metrics


def summary_metrics(epochs: list[EpochStats], wall_s: float) -> dict[str, float]:
    """Once-per-run metrics over all epochs (no step)."""
    samples = sum(e.samples for e in epochs)
    seconds = sum(e.epoch_s for e in epochs)
    wait = sum(e.data_wait_s for e in epochs)
    low, high = throughput_interval(epochs)
    metrics = {
        keys.SUMMARY_SAMPLES_PER_S: samples / seconds if seconds > 0 else float("nan"),
        keys.SUMMARY_STEADY: steady_samples_per_s(epochs),
        keys.SUMMARY_FIRST_BATCH: epochs[0].first_batch_s if epochs else float("nan"),
        keys.SUMMARY_DATA_WAIT: wait / seconds if seconds > 0 else float("nan"),
        keys.SUMMARY_WALL: wall_s,
        keys.SUMMARY_WARMUP_BATCHES: float(epochs[0].warmup_batches) if epochs else 0.0,
    }
    if not math.isnan(low):  # too few steps to say: no interval rather than a NaN
        metrics |= {keys.SUMMARY_STEADY_LOW: low, keys.SUMMARY_STEADY_HIGH: high}
    if epochs and not math.isnan(epochs[-1].loss):
        metrics[keys.SUMMARY_TRAIN_LOSS] = epochs[-1].loss
    if epochs and not math.isnan(epochs[-1].val_acc):
        metrics[keys.SUMMARY_VAL_ACC] = epochs[-1].val_acc
    return metrics


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"loader": {"num_workers": 2}}`` -> ``{"loader.num_workers": 2}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, path + ".")
        else:
            flat[path] = value
    return flat


def _clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Guard: only real numbers reach the store; anything else is dropped with a warning."""
    clean = {}
    for key, value in metrics.items():
        try:
            clean[key] = float(value)
        except (TypeError, ValueError):
            log.warning("metric %s=%r is not a number; not logged", key, value)
    return clean


# --- trackers -------------------------------------------------------------------------------
class Tracker:
    """What a run reports to. Methods are no-ops here; subclasses store.

    Emits nothing by itself: the keys come from :func:`epoch_metrics` / :func:`summary_metrics`.
    """

    run_id: str | None = None

    def start(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass

    def where(self) -> str:
        """A line telling the user where the run is and how to look at it."""
        return "tracking is off (mlflow.enabled=false): nothing was recorded"


class InMemoryTracker(Tracker):
    """Keeps everything in dicts; the tracker tests inject."""

    def __init__(self) -> None:
        self.run_name: str | None = None
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, list[tuple[int | None, float]]] = {}
        self.texts: dict[str, str] = {}
        self.status: str | None = None
        self.metric_calls = 0

    def start(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self.run_name, self.status = run_name, "RUNNING"
        self.params |= dict(params)
        self.tags |= dict(tags)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.metric_calls += 1
        for key, value in _clean_metrics(metrics).items():
            self.metrics.setdefault(key, []).append((step, value))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params |= dict(params)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags |= dict(tags)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.texts[artifact_file] = text

    def end(self, status: str = "FINISHED") -> None:
        self.status = status

    def last(self, key: str) -> float:
        return self.metrics[key][-1][1]

    def where(self) -> str:
        return "in memory"


def default_tracking_uri(launch_dir: str | os.PathLike) -> str:
    return "sqlite:///" + str(Path(launch_dir).resolve() / "outputs" / "mlflow.db")


def resolve_tracking_uri(configured: str | None, launch_dir: str | os.PathLike) -> str:
    """``mlflow.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the SQLite file under
    ``outputs/`` of the launch directory. Relative SQLite paths are made absolute against the
    launch directory, so jobs that run elsewhere (submitit) write to the same store."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(launch_dir)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str((Path(launch_dir) / uri[len("sqlite:///") :]).resolve())
    if "://" not in uri:
        raise ConfigError(
            f"mlflow.tracking_uri={uri}: a plain folder store is refused by MLflow 3; "
            "use sqlite:///path/to/mlflow.db or http://host:port"
        )
    return uri


def quiet_mlflow_logging() -> None:
    # First use of a SQLite store runs ~40 alembic migrations, each logged at INFO.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)


def open_experiment(tracking_uri: str, name: str) -> tuple[Any, str]:
    """An ``MlflowClient`` on ``tracking_uri`` and the id of experiment ``name`` (created if
    missing; for a SQLite store its artifacts go beside the database, never to ./mlruns)."""
    quiet_mlflow_logging()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return client, experiment.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        artifacts = Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts"
        artifact_location = artifacts.resolve().as_uri()
    try:
        return client, client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # another job of the sweep created it first
        return client, client.get_experiment_by_name(name).experiment_id


def ui_command(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}  (then open http://127.0.0.1:5000)"


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _text(value: Any, limit: int) -> str:
    """Guard: MLflow rejects over-long param/tag values; keep the start and say it was cut."""
    text = "null" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 20] + "...[truncated]"


class MlflowTracker(Tracker):
    """Records one MLflow run. Metrics go in one ``log_batch`` call per ``log_metrics`` call
    (the loop calls it once per epoch, never per step)."""

    PARAM_LIMIT, TAG_LIMIT, BATCH = 6000, 8000, 100

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        *,
        parent_run_id: str | None = None,
        system_metrics: bool = False,
    ):
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.parent_run_id, self.system_metrics = parent_run_id, system_metrics
        self.client: Any = None
        self.experiment_id: str | None = None
        self._system_monitor: Any = None

    def start(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self.client, self.experiment_id = open_experiment(self.tracking_uri, self.experiment)
        tags = dict(tags)
        if self.parent_run_id:
            tags[keys.PARENT_TAG] = self.parent_run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={k: _text(v, self.TAG_LIMIT) for k, v in tags.items()},
        )
        self.run_id = run.info.run_id
        self.log_params(params)
        if self.system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            # MLflow's own sampler (CPU, memory, GPU via pynvml) into this run, every 2 s.
            self._system_monitor = SystemMetricsMonitor(
                self.run_id, sampling_interval=2, tracking_uri=self.tracking_uri
            )
            self._system_monitor.start()

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step or 0) for k, v in _clean_metrics(metrics).items()]
        for chunk in _chunks(batch, 1000):
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _text(v, self.PARAM_LIMIT)) for k, v in params.items()]
        for chunk in _chunks(items, self.BATCH):
            self.client.log_batch(self.run_id, params=chunk)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, _text(v, self.TAG_LIMIT)) for k, v in tags.items()]
        for chunk in _chunks(items, self.BATCH):
            self.client.log_batch(self.run_id, tags=chunk)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        if self._system_monitor is not None:
            self._system_monitor.finish()
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)

    def where(self) -> str:
        url = ""
        if self.tracking_uri.startswith(("http://", "https://")):
            base = self.tracking_uri.rstrip("/")
            url = f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return (
            f"run {self.run_id} in experiment '{self.experiment}' of {self.tracking_uri}"
            + (f" ({url})" if url else "")
            + f"\nlook at it: {ui_command(self.tracking_uri)}"
        )
