"""The live views' lookback: each source's newest own reading, as a Prometheus instant query takes it.

A STALE stand-in in a frame means no new reading at that tick (the source's answer was late, or its
previous scrape was still running on a loaded collector). The reading before it stays what the views
show until it is older than the freshness window; only then is the source stale. Without this a
collector whose scrapes outlast the interval flips the whole rack to stale and back every other tick.
The GPU cells, the serving rows and the rack totals all look back through `freshest`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from typing import TypeVar

T = TypeVar("T")


def freshest(
    samples: Iterable[tuple[int, T]], newest_ms: int, fresh_ms: int, stand_in: Callable[[T], bool]
) -> T | None:
    """One source's newest sample within `fresh_ms` of `newest_ms` that is not a stand-in, else its newest.

    Args:
        samples: (ts_ms, sample) of the source, newest first (ticks without a sample left out).
        newest_ms: the newest frame's time.
        fresh_ms: how far back a reading still stands for now.
        stand_in: whether a sample is a stand-in rather than the source's own reading.
    """
    newest = None
    for ts, sample in samples:
        if newest is None:
            newest = sample
        if newest_ms - ts > fresh_ms:
            break
        if not stand_in(sample):
            return sample
    return newest


def interval_ms(times: Sequence[int]) -> int:
    """The collection interval from the spacing of the newest frame times (oldest first); 1 s if unknown."""
    gaps = [b - a for a, b in pairwise(times[-11:]) if b > a]
    return int(statistics.median(gaps)) if gaps else 1000
