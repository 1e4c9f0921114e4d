"""Write a small packed-JPEG dataset: ``python -m mypkg.make_data --out DIR``.

Each split is one file of JPEGs back to back (``train.bin``), with their offsets and labels
(``train.npz``) and the class names (``classes.json``): the layout of many real formats (LMDB,
a tar shard, a record file), where a dataset reads one file at many offsets. The images are
loaderbench's generated shapes, so a model has something to learn.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from loaderbench.data.shapes import SHAPES, ShapesDataset


def write_split(
    out: Path, split: str, count: int, image_size: int, classes: int, seed: int
) -> None:
    shapes = ShapesDataset(
        size=count, image_size=image_size, num_classes=classes, seed=seed, split=split
    )
    offsets, labels = [0], []
    with open(out / f"{split}.bin", "wb") as f:
        for i in range(count):
            image, label = shapes[i]
            buf = io.BytesIO()
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=90)
            f.write(buf.getvalue())
            offsets.append(offsets[-1] + buf.tell())
            labels.append(label)
    np.savez(out / f"{split}.npz", offsets=np.array(offsets, np.int64), labels=np.array(labels))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--count", type=int, default=2000, help="training images")
    p.add_argument("--val-count", type=int, default=500)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", a.count), ("val", a.val_count)):
        write_split(a.out, split, count, a.image_size, a.classes, a.seed)
    (a.out / "classes.json").write_text(json.dumps(list(SHAPES[: a.classes])))
    print(f"wrote {a.count} + {a.val_count} JPEGs to {a.out}")


if __name__ == "__main__":
    main()
