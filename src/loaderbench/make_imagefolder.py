"""Write the embedded shapes dataset to disk as an image folder (train/ and val/ class folders).

    python -m loaderbench.make_imagefolder --out /tmp/shapes-jpeg --count 2000 --val-count 400
    python run.py dataset=imagefolder dataset.root=/tmp/shapes-jpeg

The pixels are those of ``dataset=shapes`` with the same size, classes and seed (before JPEG
compression), so the two datasets differ only by reading and decoding files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from loaderbench.config import ConfigError
from loaderbench.data.imagefolder.write import FORMATS, write_imagefolder
from loaderbench.data.shapes import SHAPES


def add_shapes_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The shapes writers' options (also :mod:`loaderbench.make_shards`'s);
    :func:`shapes_arguments` reads them back as keyword arguments."""
    add = parser.add_argument
    add("--count", type=int, default=4096, help=f"{prefix}training images (4096)")
    add("--val-count", type=int, default=1024, help=f"{prefix}validation images (1024)")
    add("--image-size", type=int, default=64, help=f"{prefix}pixels per side (64)")
    add("--classes", type=int, default=6, help=f"{prefix}2..{len(SHAPES)} shapes (6)")
    add("--format", choices=sorted(FORMATS), default="jpeg", help=f"{prefix}(jpeg)")
    add("--quality", type=int, default=90, help=f"{prefix}JPEG quality 1..100 (90)")


def shapes_arguments(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        count=args.count, val_count=args.val_count, image_size=args.image_size,
        num_classes=args.classes, image_format=args.format, quality=args.quality,
    )  # fmt: skip


def write_error(exc: Exception) -> int:
    """A writer's refusal on stderr, exit status 2."""
    hint = " (--force replaces it)" if isinstance(exc, FileExistsError) else ""
    print(f"error: {exc}{hint}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (gets train/ and val/)")
    add_shapes_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="the shapes seed (0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (all cores)")
    parser.add_argument("--force", action="store_true", help="replace existing train/ and val/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        summary = write_imagefolder(
            args.out,
            **shapes_arguments(args),
            seed=args.seed,
            workers=args.workers,
            overwrite=args.force,
        )
    except (ConfigError, ValueError, FileExistsError) as exc:
        return write_error(exc)
    total = sum(summary.files.values())
    print(
        f"wrote {total} {args.format.upper()} images ({summary.files['train']} train, "
        f"{summary.files['val']} val; {len(summary.classes)} classes: "
        f"{', '.join(summary.classes)}) to {summary.root}: {summary.bytes / 1e6:.1f} MB, "
        f"{summary.bytes / total / 1e3:.1f} kB per image, in {summary.seconds:.1f} s"
    )
    if len(summary.classes) < args.classes:
        print(
            f"note: only {len(summary.classes)} of {args.classes} classes drew a sample; "
            "pass dataset.num_classes=null (the default) or write more images",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
