"""Fed or starved, defined once: the rule an emulated run is judged by (``bench.mode=emulated``).

A setting is **fed** when its steady wait per step, the time the (emulated) device sat idle
before a step because its batch was not there yet, is at most :data:`FED_SHARE` of the step
time T; **starved** otherwise. Steady: each epoch's first step is left out (worker start-up is
``summary/first_batch_s``), and so is the first after the warm-up's window edge. Pure and free
of torch: the job records the verdict (tag ``loaderbench.fed``) and the report judges rows with
the same function.
"""

from __future__ import annotations

import math

from loaderbench import keys

FED_SHARE = 0.05  # of T: what a real step's own jitter and a synchronisation cost anyway


def is_fed(wait_ms: float, step_ms: float) -> bool | None:
    """Whether a step of ``step_ms`` that waited ``wait_ms`` a step was fed; None when either
    is unknown (a run too short to have a steady step)."""
    if not (math.isfinite(wait_ms) and math.isfinite(step_ms)) or step_ms <= 0:
        return None
    return wait_ms <= FED_SHARE * step_ms


def label(wait_ms: float, step_ms: float) -> str | None:
    """``fed`` or ``starved`` (the tag's value), or None when it cannot be said."""
    fed = is_fed(wait_ms, step_ms)
    return None if fed is None else keys.FED if fed else keys.STARVED
