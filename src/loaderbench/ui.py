"""Where to look in the MLflow UI: its address, the line that opens it, and the pages of a
run, of the runs table and of a sweep's saved view. Nothing here talks to a store except
:func:`save_sweep_view`, which writes one experiment tag through the client it is given."""

from __future__ import annotations

import json
from typing import Any

from loaderbench import keys

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def ui_base(tracking_uri: str) -> str:
    """The UI's address: the server itself, or a local ``mlflow ui`` on a file store."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return LOCAL_UI


def ui_command(tracking_uri: str, page: str = "") -> str:
    """The line a user types to look at the store (``page``: a UI route to open, e.g.
    :func:`runs_page`)."""
    url = ui_base(tracking_uri) + page
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {url}"
    return f"mlflow ui --backend-store-uri {tracking_uri}  (then open {url})"


# MLflow 3's UI opens in its GenAI mode (traces, "Evaluation runs") unless the page asks for
# the model-training one.
TRAINING_MODE = "workflowType=machine_learning"


def runs_page(experiment_id: str, run_id: str | None = None) -> str:
    """The experiment's training-runs table (a sweep is one expandable row there), or one run's
    page."""
    run = f"/{run_id}" if run_id else ""
    return f"/#/experiments/{experiment_id}/runs{run}?{TRAINING_MODE}"


def save_sweep_view(
    client: Any, experiment_id: str, parent_run_id: str, swept: list[str], columns: list[str]
) -> tuple[str, str]:
    """Save an MLflow UI view of one sweep as an experiment tag (the UI's "shared view"): its
    children only, fastest first, the swept params and ``columns`` (metric keys) as columns;
    its charts open on throughput per run and a parallel-coordinates plot of the swept params
    against throughput. MLflow's own compare page picks its axes itself (the first three
    differing params, alphabetically), which hides the swept knob. Returns the UI routes of
    the table and of the charts."""
    section, throughput = "loaderbench", keys.SUMMARY_SAMPLES_PER_S
    chart = {"runsCountToCompare": 50, "metricSectionId": section, "deleted": False}
    state = {
        "searchFilter": f"tags.`{keys.PARENT_TAG}` = '{parent_run_id}'",
        "orderByKey": f"metrics.`{throughput}`",
        "orderByAsc": False,
        "selectedColumns": [f"params.`{k}`" for k in swept] + [f"metrics.`{k}`" for k in columns],
        "isAccordionReordered": True,  # keeps this section above MLflow's generated ones
        "compareRunSections": [
            {"uuid": section, "name": section, "display": True, "isReordered": True}
        ],
        "compareRunCharts": [
            chart | {"uuid": f"{section}-bar", "type": "BAR", "metricKey": throughput},
            chart
            | {
                "uuid": f"{section}-parallel",
                "type": "PARALLEL",
                "selectedParams": swept,
                "selectedMetrics": [throughput],
                "showAllRuns": False,
            },
        ],
    }
    client.set_experiment_tag(
        experiment_id, keys.SHARED_VIEW_PREFIX + parent_run_id, json.dumps(state)
    )
    table = f"{runs_page(experiment_id)}&viewStateShareKey={parent_run_id}"
    return table, table + "&compareRunsMode=CHART"


def compare_page(experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare view of ``run_ids`` (parallel coordinates, metric plots)."""
    runs = ",".join(f'"{r}"' for r in run_ids)
    return f'/#/compare-runs?runs=[{runs}]&experiments=["{experiment_id}"]'
