"""Clocks: a manual SimClock moves only when told to."""

import pytest

from collectors.clock import SimClock, WallClock


def test_manual_clock_moves_only_when_told():
    clock = SimClock(start=1_000.0)
    assert clock.now() == 1_000.0
    clock.advance(2.5)
    clock.sleep(0.5)
    assert clock.now() == 1_003.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_scaled_clock_runs_ahead_of_start():
    clock = SimClock(start=0.0, speed=1000.0)
    assert clock.now() >= 0.0
    assert clock.speed == 1000.0


def test_wall_clock_is_epoch_seconds():
    assert WallClock().now() > 1.7e9
