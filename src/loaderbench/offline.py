"""A run's record that survives its tracking server going away.

:class:`MlflowTracker <loaderbench.tracking.MlflowTracker>` writes through a :class:`Journal`:
every call (metrics, params, tags, a text artifact, the end) is kept in order with its time,
and sent at once while the server answers. When it stops answering (after MLflow's own
retries), the run goes on and the journal grows; at the run's end one more attempt sends the
rest. If the server is still away, the journal is written to the job directory
(``mlflow-offline/<run id>.json``) and the log names the one command that uploads it later::

    python -m loaderbench.offline outputs/2026-11-25/10-00-00/mlflow-offline

Uploading sends what the server never got to the same run (it exists there, RUNNING, since
the server went away after the run began); where it doesn't (another store, with
``--tracking-uri``), the whole run is recreated from the journal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from loaderbench import keys, store

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class Journal:
    """The calls of one run, in order; ``sent`` of them have reached the store."""

    def __init__(
        self, *, tracking_uri: str, experiment: str, run_name: str, tags: dict[str, str]
    ) -> None:
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.run_name, self.tags = run_name, tags
        self.start_ms = now_ms()
        self.run_id: str | None = None
        self.ops: list[dict[str, Any]] = []
        self.sent = 0

    # -- what a run does -------------------------------------------------------------------
    def batch(self, *, metrics=(), params=None, tags=None) -> dict[str, Any]:
        return {
            "kind": "batch",
            "time_ms": now_ms(),
            "metrics": [list(m) for m in metrics],
            "params": dict(params or {}),
            "tags": dict(tags or {}),
        }

    def text(self, text: str, artifact_file: str) -> dict[str, Any]:
        return {"kind": "text", "time_ms": now_ms(), "text": text, "file": artifact_file}

    def end(self, status: str) -> dict[str, Any]:
        return {"kind": "end", "time_ms": now_ms(), "status": status}

    # -- sending -----------------------------------------------------------------------------
    def send(self, client: Any, run_id: str) -> None:
        """Send every op not yet sent, in order; stops at (and raises) the first failure."""
        while self.sent < len(self.ops):
            op = self.ops[self.sent]
            if op["kind"] == "batch":
                store.log_batch(
                    client,
                    run_id,
                    metrics=[tuple(m) for m in op["metrics"]],
                    params=op["params"],
                    tags=op["tags"],
                    timestamp_ms=op["time_ms"],
                )
            elif op["kind"] == "text":
                client.log_text(run_id, op["text"], op["file"])
            else:
                client.set_terminated(run_id, op["status"], end_time=op["time_ms"])
            self.sent += 1

    # -- on disk -----------------------------------------------------------------------------
    def dump(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.run_id or 'run'}.json"
        path.write_text(json.dumps(vars(self), indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Journal:
        data = json.loads(path.read_text(encoding="utf-8"))
        journal = cls.__new__(cls)
        vars(journal).update(data)
        return journal


def upload_command(folder: Path) -> str:
    return f"python -m loaderbench.offline {folder}"


def upload(path: Path, tracking_uri: str | None = None) -> list[str]:
    """Send every journal under ``path`` (a file or a folder) to its store, or to
    ``tracking_uri``; return the run ids. An uploaded journal is renamed ``*.uploaded``."""
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no offline run record (*.json) under {path}")
    from mlflow.exceptions import MlflowException

    ids = []
    for file in files:
        journal = Journal.load(file)
        uri = tracking_uri or journal.tracking_uri
        store.check_reachable(uri)
        client, experiment_id = store.open_experiment(uri, journal.experiment)
        run_id = journal.run_id
        try:
            there = client.get_run(run_id) if run_id else None
        except MlflowException:
            there = None
        same = there is not None and there.info.experiment_id == experiment_id
        if same and there.data.tags.get(keys.KILLED_BY_TAG) == keys.KILLED_BY_LOST:
            # found dead while its record waited here: it was not; its own end says how it ended
            for tag in (keys.KILLED_BY_TAG, keys.LOST_REASON_TAG):
                client.delete_tag(run_id, tag)
        if not same:  # not in this store: the whole run again, from the journal
            run = client.create_run(
                experiment_id,
                start_time=journal.start_ms,
                run_name=journal.run_name,
                tags=journal.tags,
            )
            run_id, journal.sent = run.info.run_id, 0
        journal.send(client, run_id)
        file.rename(file.with_suffix(".uploaded"))
        log.info("uploaded %s to run %s in %s", file.name, run_id, uri)
        ids.append(run_id)
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loaderbench.offline",
        description="Upload runs recorded while their tracking server was unreachable.",
    )
    parser.add_argument("path", type=Path, help=f"a {keys.OFFLINE_DIR} folder or one .json in it")
    parser.add_argument("--tracking-uri", help="another store (default: the run's own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for run_id in upload(args.path, args.tracking_uri):
            print(run_id)
    except (FileNotFoundError, store.StoreUnreachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
