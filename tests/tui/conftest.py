"""Fixtures for the TUI tests: a head of deterministic frames and an app a test can await."""

from __future__ import annotations

import asyncio

import pytest
from tui_frames import scenario_frames

from monitor.tui.app import RackApp
from monitor.tui.messages import FrameReady
from storage.head import Head


class ObservedRackApp(RackApp):
    """RackApp that lets a test await the next applied snapshot instead of sleeping."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.snapshot_arrived = asyncio.Event()

    def on_frame_ready(self, message: FrameReady) -> None:
        # Textual runs this before RackApp's handler; tests follow with pilot.pause().
        self.snapshot_arrived.set()

    async def next_snapshot(self, pilot, timeout: float = 30.0) -> None:
        """Wait until the worker's next snapshot is applied and drawn."""
        await asyncio.wait_for(self.snapshot_arrived.wait(), timeout)
        self.snapshot_arrived.clear()
        await pilot.pause()


@pytest.fixture
def head() -> Head:
    """A head holding the scenario frames (a lost GPU, a silent tray, link errors, events)."""
    h = Head(capacity=600)
    for frame in scenario_frames():
        h.append(frame)
    return h
