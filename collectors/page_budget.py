"""A page's parse budget: the parser's line loop stops when its deadline passes.

CPython cannot stop a thread from outside, so work on a page that takes too long is abandoned from
inside: the parser walks its lines through `lines_until`, which looks at the clock once every
CHECK_EVERY lines and raises PageOverBudget once the deadline has passed. The per-line iteration stays
in C (itertools.chain over list slices), so the check costs one clock read per chunk, not per line.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import chain

CHECK_EVERY = 1024
"""Lines between clock reads. A page shorter than this is never cut: it parses in a few ms (an agent
page of 4 GPUs is ~650 lines), so a late poll does not turn every small page into a budget failure."""


class PageOverBudget(Exception):
    """Parsing stopped at its deadline.

    Attributes:
        line: the first line not parsed (1-based).
        lines: the page's line count.
    """

    def __init__(self, line: int, lines: int) -> None:
        super().__init__(f"stopped at line {line:,} of {lines:,}")
        self.line = line
        self.lines = lines


def lines_until(lines: list[str], deadline: float) -> Iterator[tuple[int, str]]:
    """`enumerate(lines, 1)` that raises PageOverBudget past `deadline` (time.monotonic() seconds)."""

    def chunks() -> Iterator[Iterator[tuple[int, str]]]:
        for start in range(0, len(lines), CHECK_EVERY):
            if start and time.monotonic() > deadline:
                raise PageOverBudget(start + 1, len(lines))
            yield enumerate(lines[start : start + CHECK_EVERY], start + 1)

    return chain.from_iterable(chunks())
