"""Robust outliers among peers: median and MAD, which one bad member cannot drag along with it.

The rule `monitor report` names its slowest GPUs by, and the straggler alert fires on (Iglewicz and
Hoaglin's modified z-score, 0.6745 (x - median) / MAD, beyond 3.5).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Mapping

ROBUST_Z = 3.5
"""Iglewicz-Hoaglin cut-off for the modified z-score (0.6745 (x - median) / MAD)."""
MIN_RELATIVE = 0.05
"""An outlier must also be this far from the median (relative), so a tight, healthy rack names nobody."""


def robust_low(values: Mapping[Hashable, float], min_relative: float = MIN_RELATIVE) -> dict[Hashable, float]:
    """Keys whose value lies far below their peers' median (modified z < -3.5 and 5 % below), with z."""
    return {k: -z for k, z in _robust(values, -1.0, min_relative).items()}


def robust_high(
    values: Mapping[Hashable, float], min_relative: float = MIN_RELATIVE
) -> dict[Hashable, float]:
    """Keys whose value lies far above their peers' median (modified z > 3.5 and 5 % above), with z."""
    return _robust(values, 1.0, min_relative)


def robust_median(values: Mapping[Hashable, float]) -> float | None:
    """The median of the finite values (what robust_low / robust_high measure against)."""
    finite = [v for v in values.values() if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else None


def _robust(values: Mapping[Hashable, float], sign: float, min_relative: float) -> dict[Hashable, float]:
    finite = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    if len(finite) < 3:
        return {}
    median = statistics.median(finite.values())
    mad = statistics.median(abs(v - median) for v in finite.values())
    out = {}
    for k, v in finite.items():
        gap = sign * (v - median)
        if gap <= max(min_relative * abs(median), 1e-9):
            continue
        z = 0.6745 * gap / mad if mad > 0 else math.inf
        if z > ROBUST_Z:
            out[k] = z
    return out
