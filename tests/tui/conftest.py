"""Fixtures for the TUI tests: a head holding deterministic scenario frames."""

from __future__ import annotations

import pytest
from tui_frames import scenario_frames

from storage.head import Head


@pytest.fixture
def head() -> Head:
    """A head holding the scenario frames (a lost GPU, a silent tray, link errors, events)."""
    h = Head(capacity=600)
    for frame in scenario_frames():
        h.append(frame)
    return h
