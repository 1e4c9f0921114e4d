"""Write tar shards in the WebDataset layout, from the shapes or any image folder:
``loaderbench.make_shards``.

    python scripts/make_shards.py --out outputs/data/shapes-shards --count 4096 --val-count 1024
    python scripts/make_shards.py --out outputs/data/my-shards --from-folder DIR

is ``python -m loaderbench.make_shards ...`` (the same flags; ``--help`` lists them).
"""

from __future__ import annotations

import sys

from loaderbench.make_shards import main

if __name__ == "__main__":
    sys.exit(main())
