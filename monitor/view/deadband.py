"""Shown figures that hold still through noise: a figure follows its source only past a deadband.

A rate derived from two counter samples jitters by a few percent every tick. Shown as it comes, each
jitter repaints a cell, and over SSH every repainted cell costs bytes while telling the operator
nothing. Held figures move when the value really moves (a link that slows by a tenth, or stops) and
stay put otherwise. No UI toolkit here.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadband:
    """How far a value may wander from the figure shown before the figure follows it.

    Attributes:
        rel: the band as a share of the figure shown.
        floor: the smallest band, in the value's unit (so figures near zero still hold).
    """

    rel: float
    floor: float

    def follow(self, shown: float | None, value: float | None) -> float | None:
        """The figure to show now: `shown` while `value` stays within the band around it, else `value`."""
        if value is None or shown is None:
            return value
        if abs(value - shown) < max(self.floor, self.rel * abs(shown)):
            return shown
        return value


class HeldFigures:
    """Figures by key, each held within a Deadband of its last shown value."""

    def __init__(self, band: Deadband) -> None:
        """Nothing shown yet."""
        self.band = band
        self._shown: dict[Hashable, float] = {}

    def hold(self, key: Hashable, value: float | None) -> float | None:
        """The figure to show for `key` now (None forgets the key, so its next value shows as it is)."""
        figure = self.band.follow(self._shown.get(key), value)
        if figure is None:
            self._shown.pop(key, None)
        else:
            self._shown[key] = figure
        return figure

    def clear(self) -> None:
        """Forget every figure (the next values show as they are)."""
        self._shown.clear()
