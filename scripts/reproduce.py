"""Re-run a recorded run (or every finished run of a sweep) and check its losses repeat exactly.

    python scripts/reproduce.py RUN_ID                      # in the default store
    python scripts/reproduce.py RUN_ID --tracking-uri URI   # e.g. sqlite:///path/mlflow.db

Each new run goes to the original's store and experiment, tagged loaderbench.reproduces=RUN_ID.
Prints "match" or the differing per-epoch values. Exit status: 0 when every per-epoch loss and
accuracy is bit-identical, 1 on any difference, 2 when the run cannot be reproduced at all.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from loaderbench.reproduce import ReproduceError, reproduce
from loaderbench.store import resolve_tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_id", help="a run id, or a sweep's parent run id")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or outputs/mlflow.db")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # config.yaml reads
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        uri = resolve_tracking_uri(args.tracking_uri, os.getcwd())
        comparisons = reproduce(args.run_id, uri)
    except (ReproduceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for comparison in comparisons:
        print("\n".join(comparison.lines()))
    matched = sum(c.matched for c in comparisons)
    if len(comparisons) > 1:
        print(f"{matched} of {len(comparisons)} runs reproduced exactly")
    print("match" if matched == len(comparisons) else "mismatch")
    return 0 if matched == len(comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
