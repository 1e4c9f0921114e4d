"""Decoder warnings, silenced and counted: real photos read quietly.

libpng prints "iCCP: known incorrect sRGB profile" and the like for metadata it distrusts, and
PIL warns about palettes, EXIF and sizes; none of it changes the pixels, and shown once per file
per epoch per worker it buries the run's own output. The image folder checks its files inside
:meth:`DecoderWarnings.quiet` and reports the count once (``data/decoder_warnings``); its
readers silence them too and each process logs one line at the first.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

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
