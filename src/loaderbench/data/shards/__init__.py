"""``dataset=shards``: tar shards in the WebDataset layout, streamed for training.

:mod:`.tar` indexes a shard and writes one; :mod:`.dataset` reads a split by sample id;
:mod:`.streams` streams the training split in an order that does not depend on
``num_workers``; :mod:`.write` writes the shapes, or an image folder, as shards; :mod:`.build`
is the option's builder, :func:`make_shards` (the ``_target_`` of ``conf/dataset/shards.yaml``).
"""

from loaderbench.data.shards.build import make_shards
from loaderbench.data.shards.dataset import ShardSet
from loaderbench.data.shards.streams import ShardStreams
from loaderbench.data.shards.write import shard_imagefolder, write_shards

__all__ = ["ShardSet", "ShardStreams", "make_shards", "shard_imagefolder", "write_shards"]
