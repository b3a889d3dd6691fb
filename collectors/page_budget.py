"""A page's parse budget: the parser's line loop gives up when its time is spent.

CPython cannot stop a thread from outside, so work on a page that takes too long is abandoned from
inside: the parser walks its lines through `lines_until`, which asks `spent()` once every CHECK_EVERY
lines and raises PageOverBudget when it says so. The per-line iteration stays in C (itertools.chain
over list slices), so the check costs one call per chunk, not per line.

PageBudget is the scrape source's `spent`: the page's own budget, and the tick's deadline (the tick
must reach the poller).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import chain

CHECK_EVERY = 1024
"""Lines between checks. A page shorter than this is never cut: it parses in a few ms (an agent page of
4 GPUs is ~650 lines), so a late tick does not turn every small page into a budget failure."""


class PageOverBudget(Exception):
    """Parsing stopped because its time was spent.

    Attributes:
        line: the first line not parsed (1-based).
        lines: the page's line count.
    """

    def __init__(self, line: int, lines: int) -> None:
        super().__init__(f"stopped at line {line:,} of {lines:,}")
        self.line = line
        self.lines = lines


def lines_until(lines: list[str], spent: Callable[[], bool]) -> Iterator[tuple[int, str]]:
    """`enumerate(lines, 1)` that raises PageOverBudget once `spent()` is true (asked per chunk)."""
    if len(lines) <= CHECK_EVERY:
        return enumerate(lines, 1)  # never cut (see CHECK_EVERY): no chunking to pay for

    def chunks() -> Iterator[Iterator[tuple[int, str]]]:
        for start in range(0, len(lines), CHECK_EVERY):
            if start and spent():
                raise PageOverBudget(start + 1, len(lines))
            yield enumerate(lines[start : start + CHECK_EVERY], start + 1)

    return chain.from_iterable(chunks())


class PageBudget:
    """One page's time: `budget_s` of wall-clock time from now, and never past the tick's `tick_by`.

    Wall-clock time, not the thread's CPU time: while a page parses it holds the GIL in turns with the
    source's HTTP loop and the next tick's poll, so its wall time is what it costs the other endpoints.
    (A CPU budget measured 2 s of wall time per page on a loaded 2-core host, and whole ticks were lost.)

    Args:
        budget_s: seconds the page may take.
        tick_by: a time.monotonic() the work must end by, whatever is left of the budget.
    """

    def __init__(self, budget_s: float, tick_by: float) -> None:
        self.budget_s = budget_s
        self.own_by = time.monotonic() + budget_s
        self.tick_by = tick_by

    def spent(self) -> bool:
        """Whether the page's time is up (its own budget, or the tick's deadline)."""
        return time.monotonic() > min(self.own_by, self.tick_by)

    def own_spent(self) -> bool:
        """Whether it was the page's own budget that ran out (not the tick's deadline first)."""
        return self.own_by <= self.tick_by and time.monotonic() > self.own_by
