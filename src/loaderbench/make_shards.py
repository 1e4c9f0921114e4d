"""Write tar shards in the WebDataset layout (train/ and val/), from the shapes or any image folder.

    python -m loaderbench.make_shards --out outputs/data/shapes-shards --count 4096
    python -m loaderbench.make_shards --out outputs/data/my-shards \
        --from-folder outputs/data/shapes-jpeg
    python run.py dataset=shards dataset.root=outputs/data/my-shards

Each sample is ``KEY.jpg`` (or .png) + ``KEY.cls`` (its class number). From the shapes, the
pixels are those of ``dataset=shapes`` with the same size, classes and seed (before JPEG
compression). From a folder (``dataset=imagefolder``'s layouts; every file is checked), the
files' bytes are stored unchanged, in an order shuffled by ``--seed`` so shards mix classes.
"""

from __future__ import annotations

import argparse
import logging
import sys

from loaderbench.config import ConfigError
from loaderbench.data.shards.write import shard_imagefolder, write_shards
from loaderbench.make_imagefolder import add_shapes_arguments, shapes_arguments, write_error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (gets train/ and val/)")
    parser.add_argument("--from-folder", help="shard this image folder instead of the shapes")
    parser.add_argument("--per-shard", type=int, default=512, help="samples per shard (512)")
    add_shapes_arguments(parser, prefix="shapes: ")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="folder: without val/")
    parser.add_argument("--seed", type=int, default=0, help="the shapes seed; the folder's order")
    parser.add_argument("--workers", type=int, default=None, help="processes (all cores)")
    parser.add_argument("--force", action="store_true", help="replace existing train/ and val/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    common = dict(per_shard=args.per_shard, seed=args.seed, workers=args.workers)
    try:
        if args.from_folder:
            summary = shard_imagefolder(
                args.out, args.from_folder, val_fraction=args.val_fraction,
                overwrite=args.force, **common,
            )  # fmt: skip
        else:
            summary = write_shards(
                args.out, **shapes_arguments(args), overwrite=args.force, **common
            )
    except (ConfigError, ValueError, FileExistsError) as exc:
        return write_error(exc)
    shards = summary.files
    print(
        f"wrote {summary.samples['train']} train and {summary.samples['val']} val samples "
        f"({len(summary.classes)} classes) as {shards['train']} + {shards['val']} shards to "
        f"{summary.root}: {summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
