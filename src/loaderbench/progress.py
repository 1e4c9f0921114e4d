"""The progress bar of an epoch: samples/s and the stall fraction as the batches arrive."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type is only an annotation here
    from loaderbench.timing import EpochStats


class Progress:
    """A bar per epoch with samples/s and the stall fraction; silent unless stderr is a tty."""

    def __init__(self, total_batches: int, desc: str, enabled: bool = True):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_batches, desc=desc, unit="batch", leave=False, file=sys.stderr
            )
        self._next_postfix = 0.0
        self.batches = 0  # arrived so far this epoch (an error names the one after them)

    def update(self, stats: EpochStats, start: float) -> None:
        self.batches += 1
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if now >= self._next_postfix:  # formatting the postfix every step would cost time
            elapsed = now - start
            self.bar.set_postfix_str(
                f"{stats.samples / elapsed:.0f} samples/s, stall {stats.data_wait_s / elapsed:.0%}",
                refresh=False,
            )
            self._next_postfix = now + 0.5

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
