"""RackApp for tests: a snapshot arriving can be awaited, so no test sleeps or polls."""

from __future__ import annotations

import asyncio

from monitor.tui.app import RackApp
from monitor.tui.messages import FrameReady


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
