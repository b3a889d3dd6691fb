"""A recording that stops (the store's disk fills) is on the alert bar until it resumes.

The real stack of `monitor demo --store`: the simulated rack and the Recording's own sources polled by the
real Poller into a real store on a real (small) tmpfs, shown by the real app under Pilot.
"""

from __future__ import annotations

from pathlib import Path

from collectors.clock import SimClock
from collectors.poller import Poller
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from monitor.recording import Recording
from monitor.tui.app import RackApp
from monitor.tui.widgets.alert_bar import AlertBar
from storage.head import Head
from storage.reader import StoreReader
from storage.schemas import EventKind
from tests.mounts import fill, tmpfs
from tests.pilot_wait import until

T0_S = 1_767_268_800.0


def bar_text(app) -> str:
    bar = app.query_one(AlertBar)
    return str(bar.render()) if bar.display else ""


async def test_the_alert_bar_says_recording_stopped_until_it_resumes(tmp_path: Path) -> None:
    clock = SimClock(T0_S)
    rack = SimRack(3, "steady", clock, start=T0_S)
    head = Head()
    with tmpfs(tmp_path / "disk", size="32m") as disk:
        recording = Recording(disk / "store", head, flush_s=1.0)
        poller = Poller(
            [SimRackFrames(rack), *recording.sources], head, clock=clock, sinks=[recording.sink], deadline=60
        )
        app = RackApp(head, interval=0)

        async def tick() -> None:
            clock.advance(1.0)
            poller.tick(round(clock.now() * 1000))

        try:
            async with app.run_test(size=(200, 40)) as pilot:
                for _ in range(3):
                    await tick()
                await until(pilot, lambda: app.snapshot.version == head.version, "first frames shown")
                assert "recording" not in bar_text(app)
                filler = fill(disk, leave=0)
                for _ in range(3):
                    await tick()
                await until(pilot, lambda: "recording stopped" in bar_text(app), "the stop on the bar")
                assert "No space left on device" in bar_text(app)
                filler.unlink()
                for _ in range(3):
                    await tick()
                await until(pilot, lambda: "recording" not in bar_text(app), "the bar cleared")
        finally:
            poller.stop()
            recording.close()
        with StoreReader(disk / "store") as reader:
            kinds = reader.sql("SELECT kind FROM events WHERE source = 'recording' ORDER BY ts").column(0)
    assert kinds.to_pylist() == [EventKind.RECORDING_STOPPED, EventKind.RECORDING_RESUMED]
