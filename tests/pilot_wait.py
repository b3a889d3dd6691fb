"""Waiting under Pilot for what a worker thread makes: bounded by a count of pauses, never by a clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(pilot, done: Callable[[], bool], what: str) -> None:
    """Wait (bounded, not timed) until `done()`; the snapshot is built in a worker thread."""
    for _ in range(3000):
        await pilot.pause()
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")
