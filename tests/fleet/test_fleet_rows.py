"""A fleet row shows the rack view's own figures: for the same frames its GPUs ok, power and tokens/s equal
the totals bar's, built from the rack's small head (12 slimmed frames) rather than the rack view's full one.
The rack's small head keeps only the row's tables; the open rack's mirror gets every table."""

from __future__ import annotations

import pytest

from collectors.clock import SimClock
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from monitor.fleet import ROW_FRAMES, FleetRack, RackHead
from monitor.view.builder import SnapshotBuilder
from monitor.view.problems import rack_problems
from monitor.view.serving import ServingBuilder
from storage.head import Head

T0 = 1_780_000_000.0


@pytest.fixture(scope="module")
def frames():
    """40 one-second frames of a rack that loses a GPU at 20 s (the simulator's fast path)."""
    clock = SimClock(T0)
    source = SimRackFrames(SimRack(seed=3, scenario="gpu-lost", clock=clock, start=T0, fault_at=20))
    return [source.poll(round((T0 + t) * 1000)) for t in range(1, 41)]


class _NoPoller:
    """FleetRack's poller slot: the rows here are built from frames appended by hand."""


def test_a_row_equals_the_rack_views_totals(frames) -> None:
    from collectors.config import RackConfig

    small = RackHead()
    full = Head()
    rack = FleetRack(RackConfig(name="r"), small, _NoPoller())  # type: ignore[arg-type]
    view = SnapshotBuilder()  # the rack view's builder, with its default 120-frame history
    serving = ServingBuilder()
    for n, frame in enumerate(frames, start=1):
        small.append(frame)
        full.append(frame)
        if n < 3:
            continue
        row = rack.current_row()
        snapshot = view.build(full.latest(view.frames_needed()))
        problems = rack_problems(snapshot, serving.build(full.latest(serving.frames_needed()), snapshot))
        assert row.ts_ms == snapshot.ts_ms
        assert row.power_kw == snapshot.totals.power
        assert row.tokens == snapshot.totals.tokens
        assert (row.gpus_ok, row.gpus) == (problems.gpus_ok, problems.gpus)
        worst = problems.problems[0] if problems.problems else None
        if worst is None:
            assert row.worst is None
        else:
            # Same problem, same place; its detail may lack an event older than the row's 12 frames (the
            # XID that took the GPU off the bus 20 s ago: docs/fleet.md says what a row's window leaves out).
            assert row.worst is not None
            assert (row.worst.rank, row.worst.what, row.worst.place) == (worst.rank, worst.what, worst.place)
    assert row.gpus_ok == 71  # the fault is in the window: the comparison covered a lost GPU


def test_the_small_head_keeps_the_row_tables_and_the_mirror_everything(frames) -> None:
    head = RackHead()
    for frame in frames[:20]:
        head.append(frame)
    assert len(head.frames()) == ROW_FRAMES
    assert all("serving_hist" not in f.batches and "gpu" in f.batches for f in head.frames())
    mirror = head.open_mirror()
    assert [f.ts_ms for f in mirror.frames()] == [f.ts_ms for f in head.frames()]
    head.append(frames[20])
    assert mirror.frames()[-1] is frames[20]  # the whole frame, serving_hist included
    assert "serving_hist" in mirror.frames()[-1].batches
    head.close_mirror()
    head.append(frames[21])
    assert mirror.frames()[-1] is frames[20]
