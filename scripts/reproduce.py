"""Re-run a recorded run (or every finished run of a sweep) and check its losses repeat exactly.

    python scripts/reproduce.py RUN_ID                      # in the default store
    python scripts/reproduce.py RUN_ID --tracking-uri URI   # e.g. sqlite:///path/mlflow.db

The same command as ``python -m loaderbench.reproduce`` (src/loaderbench/reproduce.py says what
it prints and its exit status).
"""

from __future__ import annotations

import sys

from loaderbench.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
