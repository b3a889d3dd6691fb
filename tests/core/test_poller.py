"""The poller: merging sources, snapping ticks, and standing in for late or broken sources."""

import threading
import time
from pathlib import Path

from collectors.clock import SimClock
from collectors.poller import Poller
from storage.frame import Frame, batch_from_columns
from storage.head import Head
from storage.schemas import EventKind, GpuState
from storage.writer import StoreWriter
from tests.store_checks import assert_no_duplicate_rows


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


def test_a_hung_source_goes_stale_then_down_after_three_ticks_and_its_late_answer_is_dropped():
    clock = SimClock(start=0.0)
    hung = TraySource("tray-2", [4, 5])
    head = Head()
    poller = Poller([TraySource("tray-1", [0, 1]), hung], head, clock=clock, deadline=2.0)
    poller.tick(1000)  # both answer: the poller learns tray-2's GPUs
    hung.release.clear()
    frame = poller.tick(2000)  # tray-2 misses the deadline: stale, not down yet
    rows = frame.table("gpu").to_pylist()
    states = {r["gpu"]: r["state"] for r in rows}
    assert states == {0: GpuState.OK, 1: GpuState.OK, 4: GpuState.STALE, 5: GpuState.STALE}
    assert all(r["power_mw"] is None for r in rows if r["gpu"] >= 4)
    assert events_of(frame) == []
    assert events_of(poller.tick(3000)) == []  # still busy with tick 2000: a stand-in, miss 2
    frame = poller.tick(4000)  # miss 3: down, once, naming the source
    assert events_of(frame) == [(EventKind.ENDPOINT_DOWN, "tray-2")]
    assert frame.table("events").column("detail")[0].as_py().startswith("tray-2: no answer in 3 ")
    assert events_of(poller.tick(5000)) == []
    hung.release.set()
    poller._inflight[1][0].result(timeout=30)  # the poll stamped 2000 finishes, long after its tick
    frame = poller.tick(6000)
    assert events_of(frame) == [(EventKind.ENDPOINT_UP, "tray-2")]
    assert poller.late_answers == 1
    gpu = head.table("gpu")
    keys = zip(gpu.column("ts").cast("int64").to_pylist(), gpu.column("gpu").to_pylist(), strict=True)
    assert sorted(keys) == [(ts, g) for ts in range(1000, 7000, 1000) for g in (0, 1, 4, 5)]
    assert_no_duplicate_rows(head=head)
    poller.stop()


def test_a_late_answer_lands_in_its_own_tick_and_frames_stay_in_time_order():
    """Tick 2000 waits for a slow source while tick 3000 runs; 3000 is not emitted before 2000."""
    slow = TraySource("slow", [4])
    head = Head()
    poller = Poller([TraySource("fast", [0]), slow], head, clock=SimClock(start=0.0), deadline=60.0)
    poller.tick(1000)
    slow.release.clear()
    poller.start_tick(2000)
    poller._inflight[0][-1].result(timeout=30)  # fast answered 2000
    poller.start_tick(3000)  # slow is still busy with 2000: not polled, a stand-in for 3000
    poller._inflight[0][-1].result(timeout=30)  # fast answered 3000
    assert poller.emit_ready() == []  # 2000 is still waiting, so 3000 waits behind it
    slow.release.set()
    poller._inflight[1][0].result(timeout=30)
    emitted = poller.emit_ready()
    assert [f.ts_ms for f in emitted] == [2000, 3000]
    states = [{r["gpu"]: r["state"] for r in f.table("gpu").to_pylist()} for f in emitted]
    assert states == [{0: GpuState.OK, 4: GpuState.OK}, {0: GpuState.OK, 4: GpuState.STALE}]
    assert poller.late_answers == 0
    assert_no_duplicate_rows(head=head)
    poller.stop()


def test_an_answer_after_the_deadline_is_dropped_not_stored_twice(tmp_path: Path):
    """The issue's bug: a late answer merged into the next frame stored (gpu, ts) twice."""
    slow = TraySource("slow", [4, 5])
    head = Head()
    with StoreWriter(tmp_path / "store", head=head, flush_interval_s=1.0, compaction="inline") as writer:
        poller = Poller(
            [TraySource("fast", [0]), slow],
            head,
            clock=SimClock(start=0.0),
            deadline=0.2,
            sinks=[writer.store],
        )
        poller.tick(1000)
        slow.release.clear()
        assert poller.tick(2000).table("gpu").column("state").to_pylist() == [0, 2, 2]  # OK, STALE x2
        slow.release.set()
        poller._inflight[1][0].result(timeout=30)  # answers for 2000 after 2000 was emitted
        for ts in range(3000, 6000, 1000):
            poller.tick(ts)
        poller.stop()
    assert poller.late_answers == 1
    assert_no_duplicate_rows(tmp_path / "store", head)
    gpu = head.table("gpu")
    assert gpu.num_rows == 5 * 3


def test_ticks_on_one_grid_point_are_moved_apart():
    head = Head()
    poller = Poller([TraySource("t", [0])], head, clock=SimClock(start=10.2))
    first, second = poller.tick(), poller.tick()  # both snap to 10 s
    assert (first.ts_ms, second.ts_ms) == (10_000, 11_000)
    assert_no_duplicate_rows(head=head)
    poller.stop()


def test_a_late_tick_is_one_collector_late_event_and_no_source_misses():
    head = Head()
    hung = TraySource("tray-2", [4])
    poller = Poller(
        [TraySource("tray-1", [0]), hung], head, clock=SimClock(start=0.0), deadline=0.0, name="rack-a"
    )
    poller.start_tick(1000)
    for future in (*poller._inflight[0], *poller._inflight[1]):
        future.result(timeout=30)
    assert len(poller.emit_ready()) == 1  # both answered: the poller learns tray-2's GPUs
    hung.release.clear()  # tray-2 cannot answer while the collector is late
    for ts in (2000, 3000, 4000, 5000):  # four late ticks in a row: one episode
        poller.start_tick(ts, late_s=1.4)
        poller._inflight[0][-1].result(timeout=30)
    emitted = poller.emit_ready()
    assert [f.ts_ms for f in emitted] == [2000, 3000, 4000, 5000]
    events = [e for f in emitted for e in f.table("events").to_pylist()]
    assert [(e["kind"], e["source"]) for e in events] == [(EventKind.COLLECTOR_LATE, "rack-a")]
    assert events[0]["detail"].startswith("collector late by 1.4 s")
    assert poller._health[1].misses == 0
    hung.release.set()
    poller.stop()


def test_a_stalled_poller_thread_is_one_collector_late_event_and_no_down():
    """Starvation: a sink blocks the poller's own thread for 1.5 s (as a starved process does)."""
    head = Head()
    stalled = threading.Event()

    def stall(frame: Frame) -> None:
        if not stalled.is_set():
            stalled.set()
            time.sleep(1.5)

    clock = SimClock(start=1_700_000_000.0, speed=1.0)
    poller = Poller([TraySource("tray-1", [0, 1])], head, clock=clock, interval=0.5, sinks=[stall])
    poller.start()
    version = head.version
    for _ in range(200):  # until the first tick after the stall (a bound, so a failure cannot hang)
        if any(f.table("events").num_rows for f in head.frames()):
            break
        version = head.wait_for(version, timeout=30)
    poller.stop()
    events = [e for f in head.frames() for e in f.table("events").to_pylist()]
    # Later ticks may meet a loaded machine's own delays; the stall itself is one event, and no source
    # is ever reported down for it.
    assert events[0]["kind"] == EventKind.COLLECTOR_LATE
    assert events[0]["detail"].startswith("collector late by ")
    assert EventKind.ENDPOINT_DOWN not in {e["kind"] for e in events}
    late_frames = [f for f in head.frames() if f.table("events").num_rows]
    assert late_frames[0].table("events").num_rows == 1
    assert_no_duplicate_rows(head=head)


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
