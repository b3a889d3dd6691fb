"""Clocks: the wall clock for real racks, and an injectable one that can run faster than real time."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What every source and the simulator read time from."""

    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class WallClock:
    """The real time."""

    def now(self) -> float:
        """time.time()."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """time.sleep()."""
        if seconds > 0:
            time.sleep(seconds)


class SimClock:
    """A clock that starts at `start` and moves only when told to, or `speed` times faster than real time.

    With speed=0 (the default) it is fully manual: `advance()` and `sleep()` move it instantly, which is
    what tests and `monitor sim --backfill` want. With speed > 0 it follows the wall clock scaled by
    `speed` from the moment it was made, so a demo can run a 10-minute scenario in one minute.
    """

    def __init__(self, start: float, speed: float = 0.0) -> None:
        """Start at `start` epoch seconds; `speed` 0 means manual."""
        if speed < 0:
            raise ValueError("clock speed must be >= 0")
        self._start = start
        self._offset = 0.0
        self._speed = speed
        self._wall0 = time.monotonic()
        self._lock = threading.Lock()

    @property
    def speed(self) -> float:
        """Sim seconds per wall second; 0 when manual."""
        return self._speed

    def now(self) -> float:
        """The simulated time."""
        with self._lock:
            running = (time.monotonic() - self._wall0) * self._speed if self._speed else 0.0
            return self._start + self._offset + running

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._offset += seconds

    def sleep(self, seconds: float) -> None:
        """Manual: advance instantly. Scaled: wait the wall time that makes `seconds` pass."""
        if seconds <= 0:
            return
        if self._speed:
            time.sleep(seconds / self._speed)
        else:
            self.advance(seconds)
