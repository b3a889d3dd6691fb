"""ReplayApp for tests: a test awaits the replay settling (cursor read, drawn) instead of sleeping."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.commands.replay import open_replay
from monitor.tui.messages import FrameReady
from monitor.tui.replay_app import ReplayApp, ReplayChanged
from monitor.tui.widgets.replay_bar import ReplayBar


class ObservedReplayApp(ReplayApp):
    """ReplayApp that wakes a waiting test on every snapshot and every replay change."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.changed = asyncio.Event()

    def on_frame_ready(self, message: FrameReady) -> None:
        # Textual runs this before RackApp's handler; settle() checks again after a pause.
        self.changed.set()

    def on_replay_changed(self, message: ReplayChanged) -> None:
        self.changed.set()

    def settled(self) -> bool:
        """The session is idle and the app shows the head as it is now, at the cursor."""
        state = self.session.state
        return (
            not self.session.busy
            and self.replay_state == state
            and self.snapshot.version == self.session.head.version
            and self.snapshot.ts_ms == state.cursor_ms
        )

    async def settle(self, pilot, timeout: float = 60.0) -> None:
        """Wait until settled(): every read done and drawn."""

        async def wait() -> None:
            while True:
                await pilot.pause()
                if self.settled():
                    return
                await self.changed.wait()
                self.changed.clear()

        await asyncio.wait_for(wait(), timeout)
        await pilot.pause()

    @property
    def bar_text(self) -> str:
        """What the replay bar shows now."""
        return str(self.query_one(ReplayBar).render())


def replay_app(store: Path, *, at: str | None = None, speed: float = 1.0) -> ObservedReplayApp:
    """The app `monitor replay STORE --at AT --speed SPEED` would run, redrawing on every frame."""
    opened = open_replay(store, at=at, speed=speed)
    return ObservedReplayApp(
        opened.session,
        interval=0,
        title=opened.title,
        subtitle="test store",
        store=opened.root,
        layout=opened.layout,
    )
