"""The poller: merging sources, snapping ticks, and standing in for late or broken sources."""

import threading

from collectors.clock import SimClock
from collectors.poller import Poller
from storage.frame import Frame, batch_from_columns
from storage.head import Head
from storage.schemas import EventKind, GpuState


class TraySource:
    """A source that reports fixed GPUs; can be made to hang or fail."""

    def __init__(self, name: str, gpus: list[int]) -> None:
        self.name = name
        self.gpus = gpus
        self.release = threading.Event()
        self.release.set()
        self.fail = False
        self.state = GpuState.OK
        self.closed = False

    def poll(self, ts_ms: int) -> Frame:
        self.release.wait(30)
        if self.fail:
            raise OSError("connection refused")
        n = len(self.gpus)
        batch = batch_from_columns(
            "gpu",
            {
                "ts": [ts_ms] * n,
                "gpu": self.gpus,
                "uuid": [f"GPU-{g}" for g in self.gpus],
                "tray": [g // 4 + 1 for g in self.gpus],
                "state": [int(self.state)] * n,
                "power_mw": [300_000] * n,
            },
        )
        return Frame(ts_ms, {"gpu": batch})

    def close(self) -> None:
        self.closed = True


def events_of(frame: Frame) -> list[tuple[str, str]]:
    events = frame.table("events")
    return list(zip(events.column("kind").to_pylist(), events.column("source").to_pylist(), strict=True))


def test_tick_merges_sources_and_snaps_to_the_grid():
    clock = SimClock(start=100.4)
    head = Head()
    sink: list[Frame] = []
    poller = Poller(
        [TraySource("t1", [0, 1]), TraySource("t2", [4, 5])], head, clock=clock, sinks=[sink.append]
    )
    frame = poller.tick()
    assert frame.ts_ms == 100_000
    assert sorted(frame.table("gpu").column("gpu").to_pylist()) == [0, 1, 4, 5]
    assert head.latest()[0] is frame and sink == [frame]
    poller.stop()


def test_a_hung_source_goes_stale_without_delaying_the_others():
    clock = SimClock(start=0.0)
    hung = TraySource("tray-2", [4, 5])
    poller = Poller([TraySource("tray-1", [0, 1]), hung], Head(), clock=clock, deadline=0.05)
    poller.tick(1000)  # both answer: the poller learns tray-2's GPUs
    hung.release.clear()
    frame = poller.tick(2000)
    rows = frame.table("gpu").to_pylist()
    states = {r["gpu"]: r["state"] for r in rows}
    assert states == {0: GpuState.OK, 1: GpuState.OK, 4: GpuState.STALE, 5: GpuState.STALE}
    assert all(r["power_mw"] is None for r in rows if r["gpu"] >= 4)
    assert events_of(frame) == [(EventKind.ENDPOINT_DOWN, "tray-2")]
    frame = poller.tick(3000)  # still hung: no second down event, still stale
    assert events_of(frame) == []
    hung.release.set()
    poller._inflight[1].result(timeout=30)  # let the hung poll finish before the next tick
    frame = poller.tick(4000)
    assert events_of(frame) == [(EventKind.ENDPOINT_UP, "tray-2")]
    poller.stop()


def test_a_failing_source_is_reported_and_the_lost_state_survives():
    source = TraySource("tray-3", [8])
    source.state = GpuState.LOST
    poller = Poller([source], Head(), clock=SimClock(start=0.0))
    poller.tick(1000)
    source.fail = True
    frame = poller.tick(2000)
    assert frame.table("gpu").column("state").to_pylist() == [GpuState.LOST]
    assert events_of(frame) == [(EventKind.ENDPOINT_DOWN, "tray-3")]
    assert "connection refused" in frame.table("events").column("detail")[0].as_py()
    poller.stop()
    assert source.closed


def test_start_and_stop_with_a_manual_clock():
    clock = SimClock(start=0.0)
    head = Head()
    poller = Poller([TraySource("t", [0])], head, clock=clock, interval=1.0)
    poller.start()
    head.wait_for(3, timeout=30)
    poller.stop()
    ts = [f.ts_ms for f in head.frames()]
    assert len(ts) >= 3
    assert ts == sorted(ts)
