"""Images on disk in the class-per-folder layout, decoded per sample: the real-world workload.

Layout: ``root/train/<class>/**/*.jpg`` plus ``root/val/<class>/...``, or ``root/<class>/...``
split by ``val_fraction`` per class (stratified; which files go to val is a pure function of
``seed``). Classes are the sorted folder names of the train split; labels are their indices.
The files are found by :mod:`.scan`, checked by :mod:`.check`, read by :mod:`.dataset`, with
the decoders of :mod:`loaderbench.data.decode`; :mod:`.write` writes the shapes as a folder;
:func:`make_imagefolder` (:mod:`.build`) is the ``_target_`` of
``conf/dataset/imagefolder.yaml``. Should torchvision raise on a file PIL accepted, that file
falls back to PIL with a warning.

Bad files are found when the dataset is built, before a run is recorded, so the dataset's
length is fixed before any DataLoader exists and every loader setting sees the same samples.
``verify=decode`` (default) decodes every file once with PIL (costs: see :mod:`.check`). A file
that fails is a ConfigError naming it, or with ``on_error=skip`` it is left out and counted
(``stats["skipped_files"]``); so is a folder that cannot be read or loops (a symbolic link to a
folder it is in), named otherwise (``stats["skipped_dirs"]``). File names that are not UTF-8
are read as any other and escaped where printed (``scan.printable``). ``verify=none`` skips
the check (for huge folders); a bad file then fails at read time. The check reads every file, so epoch 0 starts from a warm page cache
whatever the loader settings (unless ``cold_cache=true``). Decoder warnings (libpng's "iCCP:
known incorrect sRGB profile", PIL's) are silenced and counted (``stats["decoder_warnings"]``,
one log line), never shown per file: see :mod:`loaderbench.data.decode`.

Classes with nothing to learn are dropped (``on_error=skip``): a class folder with no readable
training image (empty, or every file unreadable) would otherwise stay a class the model can
never see, and chance would read 1/9 where 8 classes remain. It is left out with a warning
naming it (its val images too), the remaining classes are relabelled 0..k-1 in sorted order,
and ``num_classes`` is k (``stats["dropped_classes"]``). An explicit ``dataset.num_classes`` is
checked against the class folders, before any is dropped. ``on_error=raise`` refuses such a
folder instead.

Slow or cold storage (:mod:`loaderbench.data.storage`): ``read_latency_ms`` sleeps before each
file read, in the process that reads; ``cold_cache=true`` drops the training split's files from
the page cache before each epoch, so each epoch really reads the disk.
"""

from loaderbench.data.imagefolder.build import (
    ImageFolderOptions,
    build_imagefolder,
    make_imagefolder,
)
from loaderbench.data.imagefolder.dataset import ImageFolderDataset, UnreadableImageError
from loaderbench.data.imagefolder.write import write_imagefolder

__all__ = [
    "ImageFolderDataset",
    "ImageFolderOptions",
    "UnreadableImageError",
    "build_imagefolder",
    "make_imagefolder",
    "write_imagefolder",
]
