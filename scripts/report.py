"""Report on a sweep: which loader setting won, by how much, and what failed.

    python scripts/report.py                      # the latest sweep in the default store
    python scripts/report.py RUN_ID --out DIR     # a given sweep parent run
    python scripts/report.py --no-publish         # files only; leave the parent run as it is

The same command as ``python -m loaderbench.report`` (src/loaderbench/report/__main__.py says
what it writes).
"""

from __future__ import annotations

import sys

from loaderbench.report.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
