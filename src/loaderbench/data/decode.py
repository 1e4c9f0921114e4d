"""Image bytes to a uint8 tensor, and the decoders' warnings silenced and counted.

Decoders (``dataset.decoder``; both return a uint8 tensor 3×H×W, so ``transforms=none`` also
collates equal-sized images): ``pil`` is ``Image.open(...).convert("RGB")``; ``torchvision`` is
``torchvision.io.decode_image(..., mode=RGB)`` (libjpeg-turbo/libpng, no PIL object). Both turn
grayscale, palette, RGBA and CMYK into RGB with identical pixels: alpha is *dropped*, not
composited on a background; 16-bit PNGs are scaled to 8 bits (the high byte); EXIF orientation
is not applied. torchvision 0.29 deprecates its decoders in favour of TorchCodec (a
DeprecationWarning per call, hidden outside tests).

Decoder warnings: libpng prints "iCCP: known incorrect sRGB profile" and the like for metadata
it distrusts, and PIL warns about palettes, EXIF and sizes; none of it changes the pixels, and
shown once per file per epoch per worker it buries the run's own output. The image folder
checks its files inside :meth:`DecoderWarnings.quiet` and reports the count once
(``data/decoder_warnings``); its readers silence them too and each process logs one line at the
first.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

DECODERS = ("pil", "torchvision")  # the values of dataset.decoder
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png"})  # what both read: names end .<one>, any case
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def decode_pil(data: bytes | bytearray) -> torch.Tensor:
    """PIL decode to a uint8 RGB tensor 3×H×W (alpha dropped, 16-bit scaled to 8)."""
    from torchvision.transforms.v2.functional import pil_to_tensor  # see decode_torchvision

    with Image.open(io.BytesIO(data)) as img:
        if img.mode in _SIXTEEN_BIT_MODES:
            # convert("RGB") would clip 16-bit values at 255; keep the high byte like torchvision.
            high = (np.asarray(img).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
            img = Image.fromarray(high)
        return pil_to_tensor(img.convert("RGB"))


def decode_torchvision(data: bytes | bytearray) -> torch.Tensor:
    """torchvision.io decode to a uint8 RGB tensor 3×H×W (alpha dropped, 16-bit scaled to 8)."""
    # Imported here: ``import torchvision`` costs ~1.2 s (its models import torch._dynamo), and
    # every spawned worker of a dataset that decodes nothing would pay it at start-up.
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    buffer = torch.frombuffer(
        data if isinstance(data, bytearray) else bytearray(data), dtype=torch.uint8
    )
    image = decode_image(buffer, mode=ImageReadMode.RGB)
    if image.dtype != torch.uint8:  # 16-bit PNGs decode to uint16
        image = to_dtype(image, torch.uint8, scale=True)
    return image


def decode(data: bytes | bytearray, decoder: str) -> torch.Tensor:
    """``data`` decoded by ``decoder`` (one of :data:`DECODERS`)."""
    return decode_pil(data) if decoder == "pil" else decode_torchvision(data)


# Python warnings raised from these packages while decoding, and lines that the C decoders write
# to stderr with these prefixes, are decoder warnings (metadata complaints: pixels unchanged).
_DECODER_PATHS = (f"{os.sep}PIL{os.sep}", f"{os.sep}torchvision{os.sep}io{os.sep}")
_NATIVE_PREFIXES = (b"libpng warning", b"Corrupt JPEG data", b"Premature end of JPEG file")


class DecoderWarnings:
    """Silences decoder warnings and counts them, in this process.

    Real photos carry metadata that decoders complain about on every read (libpng's "iCCP:
    known incorrect sRGB profile", PIL's palette and EXIF warnings); shown per file they flood
    the terminal. Inside :meth:`quiet` they are counted, not shown; any other warning passes
    on. ``native=True`` also captures what C code writes to file descriptor 2 (libpng prints
    there, past Python), replaying the lines that are not decoder warnings.
    """

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None
        self.reported = False  # for a caller that logs once
        self._registry: dict = {}  # "default"-action warnings passed on once per location
        self._sink: tuple[int, Any] | None = None  # (pid, file) catching fd 2

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_sink": None, "_registry": {}, "reported": False}

    def _add(self, text: str) -> None:
        self.count += 1
        self.first = self.first or text.strip()

    @contextlib.contextmanager
    def quiet(self, native: bool = False) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            # a loader thread: the warnings filters and fd 2 are the process's, and swapping
            # them from several threads at once would lose them (and stderr): shown as they come
            yield
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with self._native() if native else contextlib.nullcontext():
                yield
        for w in caught:
            if w.category is not DeprecationWarning and any(
                p in w.filename for p in _DECODER_PATHS
            ):
                self._add(str(w.message))
            else:
                warnings.warn_explicit(
                    w.message, w.category, w.filename, w.lineno, registry=self._registry
                )

    @contextlib.contextmanager
    def _native(self) -> Iterator[None]:
        if self._sink is None or self._sink[0] != os.getpid():  # one file per process
            self._sink = (os.getpid(), tempfile.TemporaryFile())  # noqa: SIM115 (kept open)
        sink = self._sink[1].fileno()
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            size = os.fstat(sink).st_size
            if size:
                os.lseek(sink, 0, os.SEEK_SET)
                text = os.read(sink, size)
                os.ftruncate(sink, 0)
                os.lseek(sink, 0, os.SEEK_SET)  # fd 2 shares this offset
                for line in text.splitlines(keepends=True):
                    if line.startswith(_NATIVE_PREFIXES):
                        self._add(line.decode(errors="replace"))
                    else:
                        os.write(2, line)
