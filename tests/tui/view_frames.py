"""Frames of the real simulated rack (fast frame path), for views that need serving rows and faults."""

from __future__ import annotations

from tui_frames import T0_MS

from collectors.clock import SimClock
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from storage.frame import Frame
from storage.head import Head

T0_S = T0_MS / 1000


def sim_frames(
    scenario: str = "steady", ticks: int = 20, *, fault_at: float = 5.0, tp: int = 4
) -> list[Frame]:
    """`ticks` one-second frames of a seeded simulated rack playing `scenario` from T0."""
    clock = SimClock(T0_S)
    rack = SimRack(7, scenario, clock, start=T0_S, fault_at=fault_at, tp=tp)
    source = SimRackFrames(rack)
    frames = []
    for i in range(ticks):
        if i:
            clock.advance(1.0)
        frames.append(source.poll(round(clock.now() * 1000)))
    return frames


def sim_head(scenario: str = "steady", ticks: int = 20, **kwargs: object) -> Head:
    """A head holding sim_frames(...)."""
    head = Head()
    for frame in sim_frames(scenario, ticks, **kwargs):  # type: ignore[arg-type]
        head.append(frame)
    return head


def sim_fault(scenario: str, *, fault_at: float = 5.0, tp: int = 4) -> object:
    """The fault (gpu, link, tray, instance) the seeded rack of sim_frames picks for `scenario`."""
    rack = SimRack(7, scenario, SimClock(T0_S), start=T0_S, fault_at=fault_at, tp=tp)
    return rack.scenario.fault
