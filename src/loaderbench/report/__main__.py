"""Report on a sweep: which loader setting won, by how much, and what failed.

    python -m loaderbench.report                      # the latest sweep in the default store
    python -m loaderbench.report RUN_ID --out DIR     # a given sweep parent run
    python -m loaderbench.report --no-publish         # files only; leave the parent run as it is

Writes report.md, report.csv, throughput.png and stall.png (default: outputs/reports/<run id>),
attaches them to the sweep's parent run with its sweep/* metrics and tags, prints the markdown.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from loaderbench import report, store
from loaderbench.tracking_uri import add_tracking_uri_option


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loaderbench.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run_id", nargs="?", help="the sweep's parent run id (default: latest)")
    add_tracking_uri_option(parser)
    parser.add_argument("--out", type=Path, help="default: outputs/reports/<parent run id>")
    parser.add_argument("--no-publish", action="store_true", help="do not log to the parent run")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # error.txt reads
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        uri = store.resolve_tracking_uri(args.tracking_uri, os.getcwd())
        client = store.open_store(uri, must_exist=True, error=report.SweepNotFound)
        run_id = args.run_id or store.latest_sweep(client)
        out = args.out or Path("outputs") / "reports" / run_id
        result = report.write_report(run_id, client, out)
    except (report.SweepNotFound, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.no_publish:
        report.publish_report(run_id, client, result)
    print(result.markdown)
    print(
        f"\nwritten to {out.resolve()}" + ("" if args.no_publish else f"; logged to run {run_id}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
