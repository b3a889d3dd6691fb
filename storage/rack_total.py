"""The one rule for rack totals: a total covers only the sources that reported, and says how many.

A rack total at a tick (rack power, generated tokens/s) is the sum over the GPUs or endpoints that
reported at that tick, carried with its coverage: `RackTotal(82.1, covered=71, of=72)`. Ticks where
some sources did not answer are never summed as if they were the whole rack; what shows a total says
what it covers ("71/72 GPUs"), and a chart leaves a partial total out of its line or marks it, never
draws it as a dip. The live header, `monitor report`, report.html and `monitor snapshot` all use this
module, so they agree.

- Power: the sum of power_mw over GPUs whose row is their own reading (state OK or ERROR) at the tick.
- Tokens/s: the sum of per-series rates (storage.increase.rate, one per (endpoint, engine)); a series
  without a rate over the window (down, new, no valued pair) is not covered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from storage.schemas import GpuState

REPORTING_GPU_STATES: tuple[int, ...] = (int(GpuState.OK), int(GpuState.ERROR))
"""GPU row states that carry the GPU's own readings (LOST and STALE rows have none)."""


@dataclass(frozen=True, slots=True)
class RackTotal:
    """A rack-wide sum and what it covers.

    Attributes:
        value: the sum over the covered sources (None when none is covered).
        covered: how many sources contributed.
        of: how many sources the rack has (expected, or known in the window).
    """

    value: float | None
    covered: int
    of: int

    @property
    def whole(self) -> bool:
        """Whether every source contributed (a total that may stand for the rack)."""
        return self.value is not None and self.of > 0 and self.covered >= self.of

    def coverage(self, what: str) -> str:
        """'71/72 GPUs'."""
        return f"{self.covered}/{self.of} {what}"

    def scaled(self, factor: float) -> RackTotal:
        """The same total in another unit."""
        return RackTotal(None if self.value is None else self.value * factor, self.covered, self.of)


def power_total_kw(rows: Iterable[tuple[int, int | None]], of: int) -> RackTotal:
    """Rack power in kW at one tick from (state, power_mw) per GPU row.

    Args:
        rows: every GPU row of the tick (any state).
        of: the GPUs the rack has.
    """
    mw = [p for state, p in rows if state in REPORTING_GPU_STATES and p is not None]
    return RackTotal(sum(mw) / 1e6 if mw else None, len(mw), of)


def tokens_total(rates: Iterable[float | None], of: int) -> RackTotal:
    """Rack tokens/s from each series' rate (None: the series has no rate over the window)."""
    known = [r for r in rates if r is not None]
    return RackTotal(sum(known) if known else None, len(known), of)


def power_ticks_sql(relation: str) -> str:
    """SQL of rack power per tick over a `gpu` relation: columns ts, kw, covered (as power_total_kw)."""
    states = ", ".join(str(s) for s in REPORTING_GPU_STATES)
    reporting = f"state IN ({states}) AND power_mw IS NOT NULL"
    return (
        f"SELECT ts, (sum(power_mw) FILTER (WHERE {reporting})) / 1e6 AS kw, "
        f"count(*) FILTER (WHERE {reporting}) AS covered FROM {relation} GROUP BY ts"
    )
