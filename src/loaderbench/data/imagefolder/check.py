"""The check of every image file when the image folder is built (``dataset.verify``).

``decode`` decodes every file once with PIL, truncated images refused (JPEGs at 1/8 scale: the
whole entropy-coded stream is read, the IDCT is cheap); ``Image.verify()`` alone is not enough,
it passes truncated JPEGs. ``header`` is ``Image.open`` + ``verify()``. Small files are checked
serially (threads only fight over the GIL), large ones in threads (Pillow releases the GIL while
decoding). PIL checks the files for the ``torchvision`` decoder too: torchvision 0.29's libpng
wrapper *crashes the process* (SIGSEGV) on some corrupt PNGs instead of raising. Measured on
2,000 64×64 JPEGs (2.6 kB) on 2 busy cores: ``decode`` takes 0.25 s warm, 0.6 s from a cold page
cache, about 2.2× ``header`` (0.11 s / 0.4 s), a third of decoding them for training; a sweep
pays it once per job.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, ImageFile

from loaderbench.config import ConfigError
from loaderbench.data.decode import DecoderWarnings
from loaderbench.data.imagefolder.scan import SHOWN, listing, printable

log = logging.getLogger(__name__)


def check_image(path: str, level: str = "decode") -> str | None:
    """Why ``path`` cannot be decoded, or None when it can. ``decode``: a full PIL decode
    (JPEGs at 1/8 scale: the whole entropy-coded stream is still read, the IDCT is cheaper),
    truncation refused by the caller; ``header``: ``Image.open`` + ``verify()`` (PNG checksums,
    but truncated JPEGs pass). Safe on any bytes: PIL raises where torchvision's libpng may crash.
    """
    try:
        with Image.open(path) as img:
            if level == "header":
                img.verify()
            else:
                img.draft("RGB", (1, 1))  # a no-op for PNG
                img.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad data
        return f"{type(exc).__name__}: {exc}"
    return None


# Mean file size from which the check runs in threads. Below it the per-file Python work of
# Image.open dominates and threads only contend for the GIL (2,000 64x64 JPEGs of 3 KB: 0.25 s
# serial, 0.3-0.45 s in 2-8 threads); above it decoding dominates and Pillow releases the GIL
# (1,000 320x320 JPEGs of 38 KB: 0.5 s serial, 0.3 s in 4 threads on 2 cores).
_THREADED_MEAN_BYTES = 20_000


def verify_files(paths: list[str], sizes: list[int], level: str) -> dict[str, str]:
    """``path -> reason`` for every file ``check_image`` refuses."""
    check = functools.partial(check_image, level=level)
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, whatever the caller set
    try:
        if paths and sum(sizes) / len(sizes) >= _THREADED_MEAN_BYTES:
            with ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4)) as pool:
                reasons = list(pool.map(check, paths, chunksize=64))
        else:
            reasons = [check(p) for p in paths]
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    return {p: r for p, r in zip(paths, reasons, strict=True) if r is not None}


def check_files(
    root: str,
    candidates: list[tuple[str, int]],
    *,
    level: str,
    decoder: str,
    on_error: str,
    warned: DecoderWarnings,
) -> tuple[dict[str, str], float]:
    """Check ``(relative path, size)`` files under ``root`` (``dataset.verify=level``); return
    ``path -> reason`` for the bad ones and the seconds taken. Bad files are a ConfigError naming
    them unless ``on_error == "skip"``; decoder warnings are counted in ``warned``, not shown."""
    t0 = time.perf_counter()
    bad: dict[str, str] = {}
    if level != "none":
        paths = [os.path.join(root, f) for f, _ in candidates]
        with warned.quiet():
            bad = verify_files(paths, [size for _, size in candidates], level)
        if warned.count:
            log.info(
                "silenced %d decoder warning(s) while checking (first: %s); pixels are unchanged",
                warned.count, warned.first,
            )  # fmt: skip
        log.info(
            "checked %d image files under %s in %.2f s",
            len(paths),
            printable(root),
            time.perf_counter() - t0,
        )
    elif decoder == "torchvision":
        log.warning("dataset.verify=none: a corrupt PNG can crash torchvision's decoder (SIGSEGV)")
    verify_s = time.perf_counter() - t0
    if bad and on_error == "raise":
        shown = [printable(f"{p} ({r})") for p, r in list(bad.items())[:SHOWN]]
        more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise ConfigError(
            f"{len(bad)} image file(s) cannot be decoded: {'; '.join(shown)}{more}; fix or "
            "remove them, or pass dataset.on_error=skip to leave them out"
        )
    if bad:
        log.warning("skipping %d undecodable image file(s): %s", len(bad), listing(list(bad)))
    return bad, verify_s
