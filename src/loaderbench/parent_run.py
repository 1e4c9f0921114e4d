"""A sweep's parent run, opened and kept in the tracking process (:mod:`loaderbench.tracking_host`),
for the sweep's callback (:mod:`loaderbench.sweep`) in the launching process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loaderbench import keys, lost, store, ui
from loaderbench.heartbeat import Heartbeat

# The metric columns of a sweep's saved view in the MLflow UI, after the swept params.
VIEW_COLUMNS = [
    keys.SUMMARY_SAMPLES_PER_S,
    keys.SUMMARY_STEADY_LOW,
    keys.SUMMARY_STEADY_HIGH,
    keys.SUMMARY_DATA_WAIT,
    keys.PEAK_PSS,
    keys.SUMMARY_VAL_ACC,
]


class ParentRun:
    """The sweep's parent run, opened and kept in the tracking process
    (:mod:`loaderbench.tracking_host`, so the process that runs the jobs never holds MLflow):
    this host's runs that a dead process left RUNNING ended first, its tags, its params and
    ``texts`` (artifact name -> text), and a heartbeat while the jobs run, here or on a cluster
    (a Slurm sweep waits for hours)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        tags: dict[str, str],
        params: dict[str, str],
        texts: dict[str, str],
    ):
        self.tracking_uri = tracking_uri
        self.client, self.experiment_id = store.open_experiment(tracking_uri, experiment)
        lost.end_lost_here(self.client)  # earlier sweeps on this host that died without a word
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        self.heartbeat = Heartbeat(self.client, self.run_id).start()
        store.log_batch(self.client, self.run_id, params=params)
        for name, text in texts.items():
            self.client.log_text(self.run_id, text, name)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        store.log_batch(self.client, self.run_id, metrics=[(k, v, 0) for k, v in metrics.items()])

    def end_unfinished(self) -> None:
        lost.end_unfinished(self.client, self.run_id)  # every job has returned: none still runs

    def publish(self, sweep_dir: Path) -> Any:
        """The report into ``sweep_dir`` and onto the parent, with its links."""
        from loaderbench.report import publish_report, write_report

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        result = write_report(self.run_id, self.client, sweep_dir)
        result.links = self.links(result)
        publish_report(self.run_id, self.client, result, result.links)
        return result

    def links(self, result: Any) -> list[str]:
        """Where to look in the MLflow UI: this sweep's runs (a saved view: fastest first, the
        swept knobs as columns), its charts, and MLflow's compare page of the children."""
        ids = [r.run_id for r in result.rows]
        base = ui.ui_base(self.tracking_uri)
        swept = [k for k in result.varied if k != keys.REPEAT_PARAM] or [keys.WORKERS_PARAM]
        table, charts = ui.save_sweep_view(
            self.client, self.experiment_id, self.run_id, swept, VIEW_COLUMNS
        )
        return [
            f"- runs: {base}{table}",
            f"- charts: {base}{charts}",
            f"- compare: {base}{ui.compare_page(self.experiment_id, ids)}",
        ]

    def finish(self, status: str, tags: dict[str, str] | None = None) -> None:
        self.heartbeat.stop()
        if tags:
            store.log_batch(self.client, self.run_id, tags=tags)
        self.client.set_terminated(self.run_id, status)
