"""The one way to reach a tracking store: open it, read runs back from it, write batches.
Where it is (its URI, checked for credentials and a server that answers) is
:mod:`loaderbench.tracking_uri`'s; its names are re-exported here.

This is the only module that builds an ``MlflowClient``. mlflow (and omegaconf) are imported
inside functions only: ``import mlflow`` costs ~3 s, and the report must stay importable without
it (and without torch). The client is used with explicit run ids, never the fluent
``mlflow.start_run`` global: a sweep's parent and its in-process jobs must not share an
"active run".
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from loaderbench import keys
from loaderbench.tracking_uri import (  # noqa: F401  where the store is: re-exported here
    SCHEMES,
    SQLITE,
    StoreUnauthorized,
    StoreUnreachable,
    check_reachable,
    default_tracking_uri,
    is_unreachable,
    resolve_tracking_uri,
)
from loaderbench.tracking_uri import sqlite_file as _sqlite_file

try:
    import fcntl
except ImportError:  # not POSIX: no lock (and no parallel first use to guard there)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

PAGE = 1000  # runs per search page (MLflow's own maximum is larger; paging is what matters)
# What one MLflow log_batch call accepts at most, per kind.
BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}


class NotInStore(LookupError):
    """No tracking store, run or artifact where one was asked for."""


class SweepNotFound(NotInStore):
    """The run id does not exist, or is not the parent run of a sweep."""


@contextlib.contextmanager
def _one_at_a_time(db: Path | None) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store while it is created or migrated. MLflow's
    first use of a new store runs ~40 alembic migrations; jobs started at once (submitit, Slurm
    arrays, two sweeps) that race there fail or leave the store unreadable."""
    if db is None or fcntl is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def quiet_mlflow_logging() -> None:
    # First use of a SQLite store runs ~40 alembic migrations, each logged at INFO.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)


# Tells MLflow 3's UI that the experiment holds model training, not a GenAI app (whose pages
# list runs as "Evaluation runs"); the links add TRAINING_MODE, the UI's own switch.
KIND = (keys.EXPERIMENT_KIND_TAG, keys.EXPERIMENT_KIND)


# --- opening it -----------------------------------------------------------------------------
def open_store(
    tracking_uri: str, *, must_exist: bool = False, error: type[NotInStore] = NotInStore
) -> Any:
    """An ``MlflowClient`` on ``tracking_uri``. With ``must_exist``, a missing SQLite file is
    ``error`` (the client would silently create an empty store there); otherwise its folder is
    created."""
    db = _sqlite_file(tracking_uri)
    if db is not None and must_exist and not db.exists():
        raise error(f"no tracking store at {db} (nothing has been recorded there yet)")
    quiet_mlflow_logging()
    from mlflow.tracking import MlflowClient

    with _one_at_a_time(db):  # the client creates or migrates the store on construction
        return MlflowClient(tracking_uri=tracking_uri)


def open_experiment(tracking_uri: str, name: str) -> tuple[Any, str]:
    """A client on ``tracking_uri`` and the id of experiment ``name`` (created if missing; for
    a SQLite store its artifacts go beside the database in ``mlartifacts/``, never ./mlruns)."""
    from mlflow.exceptions import MlflowException

    client = open_store(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if keys.EXPERIMENT_KIND_TAG not in experiment.tags:  # made before loaderbench tagged it
            client.set_experiment_tag(experiment.experiment_id, *KIND)
        return client, experiment.experiment_id
    db = _sqlite_file(tracking_uri)
    artifact_location = (db.parent / "mlartifacts").resolve().as_uri() if db else None
    with _one_at_a_time(db):
        try:
            return client, client.create_experiment(
                name, artifact_location=artifact_location, tags=dict([KIND])
            )
        except MlflowException:  # another job of the sweep created it first
            return client, client.get_experiment_by_name(name).experiment_id


# --- reading runs ---------------------------------------------------------------------------
def get_run(client: Any, run_id: str, error: type[NotInStore] = NotInStore) -> Any:
    """The run, or ``error`` naming the id and the store."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise error(f"run {run_id} not found in {client.tracking_uri}") from exc


def is_sweep(run: Any) -> bool:
    return run.data.tags.get(keys.ROLE_TAG) == keys.ROLE_SWEEP


def sweep_parent(client: Any, run_id: str) -> Any:
    """The parent run of a sweep, or :class:`SweepNotFound`."""
    run = get_run(client, run_id, SweepNotFound)
    if not is_sweep(run):
        raise SweepNotFound(f"run {run_id} is not a sweep parent (no {keys.ROLE_TAG}=sweep)")
    return run


def child_runs(
    client: Any, parent: Any, *, finished_only: bool = False, page_size: int = PAGE
) -> list[Any]:
    """Every run tagged with ``parent``'s id as ``mlflow.parentRunId``, in start order, all
    pages. ``finished_only``: FINISHED runs that are not deleted; else any status, deleted too."""
    from mlflow.entities import ViewType

    query = f"tags.`{keys.PARENT_TAG}` = '{parent.info.run_id}'"
    if finished_only:
        query += " and attributes.status = 'FINISHED'"
    view = ViewType.ACTIVE_ONLY if finished_only else ViewType.ALL
    order, experiments = ["attributes.start_time ASC"], [parent.info.experiment_id]
    runs, token = [], None
    while True:
        page = client.search_runs(experiments, query, view, page_size, order, page_token=token)
        runs += list(page)
        if not (token := page.token):
            return runs


def latest_sweep(client: Any) -> str:
    """Id of the most recently started run tagged ``loaderbench.role=sweep``, any experiment."""
    from mlflow.entities import ViewType

    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    query = f"tags.`{keys.ROLE_TAG}` = '{keys.ROLE_SWEEP}'"
    order = ["attributes.start_time DESC"]
    runs = client.search_runs(ids, query, ViewType.ALL, 1, order) if ids else []
    if not runs:
        raise SweepNotFound(f"no sweep (run tagged {keys.ROLE_TAG}=sweep) in {client.tracking_uri}")
    return runs[0].info.run_id


def metric_history(client: Any, run_id: str, key: str) -> dict[int, list[float]]:
    """Every value recorded for ``key``, per step (ascending), in logging order. The full
    history: a step logged twice (a re-logged or tampered value) keeps both values."""
    metrics = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    steps: dict[int, list[float]] = {}
    for m in metrics:
        steps.setdefault(m.step, []).append(m.value)
    return steps


def last_per_step(history: Mapping[int, list[float]]) -> list[float]:
    """A :func:`metric_history` as one value per step: the last one logged."""
    return [history[step][-1] for step in sorted(history)]


def read_text(client: Any, run_id: str, artifact: str) -> str | None:
    """A top-level text artifact of the run, or None when the run has none by that name."""
    if artifact not in {a.path for a in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, artifact, tmp)).read_text(encoding="utf-8")


def run_config(client: Any, run_id: str) -> Any:
    """The run's resolved config (its ``config.yaml``) as a DictConfig, or None."""
    from omegaconf import OmegaConf

    text = read_text(client, run_id, keys.CONFIG_ARTIFACT)
    return None if text is None else OmegaConf.create(text)


# --- writing --------------------------------------------------------------------------------
def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_batch(
    client: Any,
    run_id: str,
    *,
    metrics: Iterable[tuple[str, float, int]] = (),
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    timestamp_ms: int | None = None,
) -> None:
    """Metrics (key, value, step), params and tags in as few ``log_batch`` calls as MLflow's
    per-call limits allow; every metric gets the same timestamp (now, unless given)."""
    from mlflow.entities import Metric, Param, RunTag

    now = timestamp_ms or int(time.time() * 1000)
    items = {
        "metrics": [Metric(k, v, now, step) for k, v, step in metrics],
        "params": [Param(k, v) for k, v in (params or {}).items()],
        "tags": [RunTag(k, v) for k, v in (tags or {}).items()],
    }
    if not any(items.values()):
        return
    if sum(map(len, items.values())) <= BATCH_LIMITS["metrics"] and all(
        len(v) <= BATCH_LIMITS[kind] for kind, v in items.items()
    ):
        client.log_batch(run_id, **items)  # the usual case: one call
        return
    for kind, values in items.items():
        for chunk in _chunks(values, BATCH_LIMITS[kind]):
            client.log_batch(run_id, **{kind: chunk})
