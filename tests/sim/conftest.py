"""Fixtures for the simulated rack: a manual clock, so tests step time explicitly and never wait."""

from __future__ import annotations

import pytest

from collectors.clock import SimClock
from collectors.sim import SimRack, SimTray

T0 = 1_760_000_000.0


@pytest.fixture
def clock() -> SimClock:
    """A manual clock at a fixed epoch."""
    return SimClock(T0)


@pytest.fixture
def rack(clock: SimClock) -> SimRack:
    """A steady rack on the manual clock."""
    return SimRack(seed=7, clock=clock)


@pytest.fixture
def tray(rack: SimRack) -> SimTray:
    """Tray 16 (trayIndex 15, as in the real capture), initialised."""
    t = rack.tray_of(16)
    t.nvmlInit()
    return t
