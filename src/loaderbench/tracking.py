"""Where a run's results go: the :class:`Tracker` protocol and its implementations.

:class:`NullTracker` (``mlflow.enabled=false``: nothing recorded, mlflow never imported),
:class:`InMemoryTracker` (tests inject it) and :class:`MlflowTracker` (one MLflow run, opened
through :mod:`loaderbench.store`; a job's lives in the tracking process, as
:class:`loaderbench.tracking_host.HostedTracker`, so that the job's process never holds MLflow).
The metric keys come from :mod:`loaderbench.keys`; the metrics themselves from
:mod:`loaderbench.timing`. mlflow is imported inside methods only:
``import mlflow`` costs ~3 s, and spawned DataLoader workers re-import the main module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from loaderbench import keys, offline, store, ui
from loaderbench.heartbeat import Heartbeat
from loaderbench.lost import end_lost_here

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
    (the loop calls it once per epoch, never per step).

    Every call goes through a :class:`~loaderbench.offline.Journal`. If the server stops
    answering mid-run, the run goes on, the rest is kept, sent at the end if the server is
    back, and otherwise written under ``offline_dir`` with the command that uploads it.

    While the run is open a :class:`~loaderbench.heartbeat.Heartbeat` refreshes its
    heartbeat tag; before it opens, this host's runs left RUNNING by a dead process are ended
    (:func:`~loaderbench.lost.end_lost_here`; ``end_lost=False``: not here)."""

    PARAM_LIMIT, TAG_LIMIT = 6000, 8000
    # MLflow retries a failed request 7 times with a backoff factor of 2 (minutes of waiting
    # per call); a run that must go on waits ~7 s (1+2+4) before it keeps its record locally.
    # The user's own MLFLOW_HTTP_REQUEST_* settings win.
    RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        *,
        parent_run_id: str | None = None,
        system_metrics: bool = False,
        offline_dir: str | os.PathLike | None = None,
        end_lost: bool = True,
    ):
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.end_lost = end_lost  # end this host's runs left RUNNING by a dead process, first
        self._heartbeat: Heartbeat | None = None
        self.parent_run_id, self.system_metrics = parent_run_id, system_metrics
        self.offline_dir = Path(offline_dir or keys.OFFLINE_DIR)
        self.run_id: str | None = None
        self.client: Any = None
        self.experiment_id: str | None = None
        self.journal: offline.Journal | None = None
        self.unreachable: str | None = None  # why the server stopped answering, once it did
        self.offline_record: Path | None = None
        self._system_monitor: Any = None

    def start(self, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        for var, value in self.RETRIES.items():
            os.environ.setdefault(var, value)
        self.client, self.experiment_id = store.open_experiment(self.tracking_uri, self.experiment)
        if self.end_lost:
            end_lost_here(self.client)
        tags = dict(tags)
        if self.parent_run_id:
            tags[keys.PARENT_TAG] = self.parent_run_id
        tags = {k: _text(v, self.TAG_LIMIT) for k, v in tags.items()}
        self.journal = offline.Journal(
            tracking_uri=self.tracking_uri, experiment=self.experiment, run_name=run_name, tags=tags
        )
        run = self.client.create_run(
            self.experiment_id, start_time=self.journal.start_ms, run_name=run_name, tags=tags
        )
        self.run_id = self.journal.run_id = run.info.run_id
        self._heartbeat = Heartbeat(self.client, self.run_id).start()
        self.log_params(params)
        if self.system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            # MLflow's own sampler (CPU, memory, GPU via pynvml) into this run, every 2 s.
            self._system_monitor = SystemMetricsMonitor(
                self.run_id, sampling_interval=2, tracking_uri=self.tracking_uri
            )
            self._system_monitor.start()

    def _record(self, op: dict[str, Any]) -> None:
        """Keep ``op``; send it (and anything held back) unless the server is known away."""
        self.journal.ops.append(op)
        if self.unreachable is None:
            self._send()

    def _send(self) -> bool:
        try:
            self.journal.send(self.client, self.run_id)
            return True
        except Exception as exc:
            if not store.is_unreachable(exc):
                raise
            first, self.unreachable = self.unreachable is None, str(exc).splitlines()[0][:200]
            if first:
                log.warning(
                    "tracking server %s stopped answering (%s); the run goes on and keeps its "
                    "record, to send at its end",
                    self.tracking_uri,
                    self.unreachable,
                )
            return False

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        batch = [(k, v, step or 0) for k, v in _clean_metrics(metrics).items()]
        self._record(self.journal.batch(metrics=batch))

    def log_params(self, params: Mapping[str, Any]) -> None:
        texts = {k: _text(v, self.PARAM_LIMIT) for k, v in params.items()}
        self._record(self.journal.batch(params=texts))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._record(self.journal.text(text, artifact_file))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        texts = {k: _text(v, self.TAG_LIMIT) for k, v in tags.items()}
        self._record(self.journal.batch(tags=texts))

    def end(self, status: str = "FINISHED") -> None:
        if self._system_monitor is not None:
            self._system_monitor.finish()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self.run_id is None:
            return
        self.journal.ops.append(self.journal.end(status))
        if self._send():  # sent, or the server is back in time
            return
        self.offline_record = self.journal.dump(self.offline_dir)
        log.warning(
            "tracking server %s is unreachable (%s): this run's params, metrics and artifacts "
            "are in %s; when the server is back, upload them with: %s",
            self.tracking_uri,
            self.unreachable,
            self.offline_record,
            offline.upload_command(self.offline_dir),
        )

    def where(self) -> str:
        if self.offline_record is not None:
            return (
                f"run {self.run_id} kept offline in {self.offline_record} (upload: "
                f"{offline.upload_command(self.offline_dir)})"
            )
        page = ui.runs_page(self.experiment_id, self.run_id)
        return (
            f"run {self.run_id} in experiment '{self.experiment}' of {self.tracking_uri}"
            f"\nlook at it: {ui.ui_command(self.tracking_uri, page)}"
        )
