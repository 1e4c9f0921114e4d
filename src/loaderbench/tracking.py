"""Where a run's results go: the :class:`Tracker` protocol and its three implementations.

:class:`NullTracker` (``mlflow.enabled=false``: nothing recorded, mlflow never imported),
:class:`InMemoryTracker` (tests inject it) and :class:`MlflowTracker` (one MLflow run, opened
through :mod:`loaderbench.store`). The metric keys come from :mod:`loaderbench.keys`; the
metrics themselves from :mod:`loaderbench.timing`. mlflow is imported inside methods only:
``import mlflow`` costs ~3 s, and spawned DataLoader workers re-import the main module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from loaderbench import keys, store

log = logging.getLogger(__name__)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Params from a config tree: ``{"loader": {"num_workers": 2}}`` ->
    ``{"loader.num_workers": 2}``, so UI columns match CLI overrides; lists stay values."""
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


def _text(value: Any, limit: int) -> str:
    """Guard: MLflow rejects over-long param/tag values; keep the start and say it was cut."""
    text = "null" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 20] + "...[truncated]"


@runtime_checkable
class Tracker(Protocol):
    """What a run reports to. It emits nothing by itself: the caller passes the metrics
    (:func:`loaderbench.timing.epoch_metrics` / :func:`~loaderbench.timing.summary_metrics`)."""

    run_id: str | None

    def start(
        self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> None: ...

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def end(self, status: str = "FINISHED") -> None: ...

    def where(self) -> str:
        """A line telling the user where the run is and how to look at it."""
        ...


class NullTracker:
    """``mlflow.enabled=false``: records nothing."""

    run_id: str | None = None

    def start(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass

    def where(self) -> str:
        return "tracking is off (mlflow.enabled=false): nothing was recorded"


class InMemoryTracker:
    """Keeps everything in dicts; the tracker tests inject."""

    run_id: str | None = None

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

    def log_text(self, text: str, artifact_file: str) -> None:
        self.texts[artifact_file] = text

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags |= dict(tags)

    def end(self, status: str = "FINISHED") -> None:
        self.status = status

    def last(self, key: str) -> float:
        return self.metrics[key][-1][1]

    def where(self) -> str:
        return "in memory"


class MlflowTracker:
    """Records one MLflow run. Metrics go in one ``log_batch`` call per ``log_metrics`` call
    (the loop calls it once per epoch, never per step)."""

    PARAM_LIMIT, TAG_LIMIT = 6000, 8000

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
        self.run_id: str | None = None
        self.client: Any = None
        self.experiment_id: str | None = None
        self._system_monitor: Any = None

    def start(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self.client, self.experiment_id = store.open_experiment(self.tracking_uri, self.experiment)
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
        batch = [(k, v, step or 0) for k, v in _clean_metrics(metrics).items()]
        store.log_batch(self.client, self.run_id, metrics=batch)

    def log_params(self, params: Mapping[str, Any]) -> None:
        texts = {k: _text(v, self.PARAM_LIMIT) for k, v in params.items()}
        store.log_batch(self.client, self.run_id, params=texts)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        texts = {k: _text(v, self.TAG_LIMIT) for k, v in tags.items()}
        store.log_batch(self.client, self.run_id, tags=texts)

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
            + f"\nlook at it: {store.ui_command(self.tracking_uri)}"
        )
