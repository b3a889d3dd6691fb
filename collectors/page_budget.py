"""A page's parse budget: the parser's line loop gives up when its time is spent.

CPython cannot stop a thread from outside, so work on a page that takes too long is abandoned from
inside: the parser walks its lines through `lines_until`, which asks `spent()` once every CHECK_EVERY
lines and raises PageOverBudget when it says so. The per-line iteration stays in C (itertools.chain
over list slices), so the check costs one call per chunk, not per line.

PageBudget is the scrape source's `spent`: the page's own CPU time (time.thread_time, so a loaded host
does not count against the page) and the tick's wall-clock deadline (the tick must reach the poller).
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

    def chunks() -> Iterator[Iterator[tuple[int, str]]]:
        for start in range(0, len(lines), CHECK_EVERY):
            if start and spent():
                raise PageOverBudget(start + 1, len(lines))
            yield enumerate(lines[start : start + CHECK_EVERY], start + 1)

    return chain.from_iterable(chunks())


class PageBudget:
    """One page's time: `cpu_s` of this thread's CPU from now, and never past `wall_by`.

    Args:
        cpu_s: CPU seconds the page may take (time.thread_time of the parsing thread).
        wall_by: a time.monotonic() the work must end by, whatever CPU is left.
    """

    def __init__(self, cpu_s: float, wall_by: float) -> None:
        self.cpu_s = cpu_s
        self.cpu_by = time.thread_time() + cpu_s
        self.wall_by = wall_by

    def spent(self) -> bool:
        """Whether either limit has passed."""
        return time.thread_time() > self.cpu_by or time.monotonic() > self.wall_by

    def own_spent(self) -> bool:
        """Whether the page's own CPU budget has passed (else the stop was the wall-clock deadline's)."""
        return time.thread_time() > self.cpu_by
