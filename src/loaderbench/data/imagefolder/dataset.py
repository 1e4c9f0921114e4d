"""One split of an image folder as a dataset: a file read and decoded per sample.

Should torchvision raise on a file PIL accepted, that file falls back to PIL with a warning.
Decoder warnings are silenced while reading (one log line per process, at the first).
``read_latency_ms`` is paid once per file; ``cold_cache=true`` drops the split's files from the
page cache before each epoch (:class:`~loaderbench.data.storage.StoredFiles`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from loaderbench.config import ConfigError
from loaderbench.data.decode import DECODERS, DecoderWarnings, decode_pil, decode_torchvision
from loaderbench.data.imagefolder.scan import printable
from loaderbench.data.storage import StoredFiles, read_bytes
from loaderbench.data.validate import check_choice

log = logging.getLogger(__name__)


class UnreadableImageError(ConfigError):
    """An image file that cannot be read or decoded; the message names the file."""


class ImageFolderDataset(StoredFiles, Dataset):
    """``(uint8 tensor 3×H×W, label)`` for an integer index, read from ``root/files[index]``.

    The file list is a numpy bytes array, not a Python list of str: it pickles as one buffer for
    spawned workers, and forked workers reading it touch no per-item reference counts, so the
    list's pages stay shared (a list of str is copied page by page into every worker).
    """

    def __init__(
        self,
        *,
        root: str,
        files: Sequence[str],
        labels: Sequence[int],
        classes: Sequence[str],
        decoder: str = "pil",
        read_latency_ms: float = 0.0,
        cold_cache: bool = False,
        verified: bool = False,
    ):
        check_choice("decoder", decoder, DECODERS)
        self.root = root
        self.files = np.array([os.fsencode(f) for f in files], dtype=bytes)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = tuple(classes)
        self.decoder = decoder
        StoredFiles.__init__(self, read_latency_ms=read_latency_ms, cold_cache=cold_cache)
        self.verified = verified  # every file decoded once when the dataset was built
        self._fallback_warned = False
        self.warnings = DecoderWarnings()  # silenced while reading, in this process

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return os.path.join(self.root, os.fsdecode(self.files[index]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.path(index)
        self.wait_for_storage()
        try:
            with self.warnings.quiet(native=self.decoder == "torchvision"):  # libpng: fd 2
                image = self._decode(read_bytes(path), path)
        except Exception as exc:
            fix = (
                "it was readable when the dataset was built: was it changed since? Restore it"
                if self.verified
                else "fix or remove it (dataset.verify=decode finds such files before the run, "
                "and dataset.on_error=skip then leaves them out)"
            )
            raise UnreadableImageError(  # a name that is not UTF-8 is shown escaped
                printable(f"{path}: cannot read the image ({type(exc).__name__}: {exc}); {fix}")
            ) from exc
        if self.warnings.count and not self.warnings.reported:
            self.warnings.reported = True  # one line per process, never one per file
            log.info(
                "decoder warnings are silenced while reading (first: %s); pixels are unchanged",
                self.warnings.first,
            )
        return image, int(self.labels[index])

    def _decode(self, data: bytearray, path: str) -> torch.Tensor:
        if self.decoder == "pil":
            return decode_pil(data)
        try:
            return decode_torchvision(data)
        except RuntimeError as exc:  # PIL read this file at build time: let it decode it
            if not self._fallback_warned:
                log.warning(
                    "torchvision cannot decode %s (%s); using PIL for it", printable(path), exc
                )
                self._fallback_warned = True
            return decode_pil(data)

    def stored_files(self) -> Iterator[str]:
        return (self.path(i) for i in range(len(self)))
