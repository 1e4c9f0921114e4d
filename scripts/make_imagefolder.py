"""Write the embedded shapes dataset to disk as an image folder: ``loaderbench.make_imagefolder``.

    python scripts/make_imagefolder.py --out /tmp/shapes-jpeg --count 2000 --val-count 400

is ``python -m loaderbench.make_imagefolder ...`` (the same flags; ``--help`` lists them).
"""

from __future__ import annotations

import sys

from loaderbench.make_imagefolder import main

if __name__ == "__main__":
    sys.exit(main())
