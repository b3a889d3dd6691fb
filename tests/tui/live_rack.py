"""The simulated rack polled by the real Poller and AlertRecorder on a manual clock, for Pilot tests.

The stack is run_live's (AlertRecorder as the poller's sink and source, the head, RackApp) with the
simulated rack's fast frame path as the source, ticked by hand so minutes of rack time pass in a
fraction of a second of real time. `truth` keeps what the simulator itself put on every link.
"""

from __future__ import annotations

import asyncio

from tui_frames import T0_MS

from collectors.alert_recorder import AlertRecorder
from collectors.alert_rules import AlertRules
from collectors.clock import SimClock
from collectors.poller import Poller
from collectors.rack import LINKS_PER_GPU
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from storage.head import Head
from tests.pilot_wait import until

T0_S = T0_MS / 1000
FAULT_AT_S = 2.0


class LiveRack:
    """The simulated rack, polled through the real Poller and AlertRecorder on a manual clock."""

    def __init__(self, scenario: str, seed: int = 7, fault_at: float = FAULT_AT_S) -> None:
        """The rack playing `scenario` (its fault from `fault_at` s), polled by the default alert rules."""
        self.clock = SimClock(T0_S)
        self.rack = SimRack(seed, scenario, self.clock, start=T0_S, fault_at=fault_at)
        self.head = Head()
        recorder = AlertRecorder(AlertRules())  # the defaults, as `monitor demo` runs
        # A generous deadline: a tick returns as soon as its sources answer, however busy the machine.
        self.poller = Poller(
            [SimRackFrames(self.rack), recorder], self.head, clock=self.clock, sinks=[recorder], deadline=60
        )
        self.link_kib: dict[int, list[float]] = {}
        """Tick ts (ms) -> per rack GPU, the KiB (TX + RX, all links) the simulator had moved by then."""

    async def tick(self) -> None:
        """Advance the clock one second and record one frame (off the app's event loop)."""
        self.clock.advance(1.0)
        ts_ms = round(self.clock.now() * 1000)
        await asyncio.to_thread(self.poller.tick, ts_ms)
        # The simulator's own counters as the tick's reads saw them (the rack holds them until its next step).
        self.link_kib[ts_ms] = [
            sum(g.links.read_link_tx(k) + g.links.read_link_rx(k) for k in range(LINKS_PER_GPU))
            for g in self.rack.gpus
        ]

    def truth_gbps(self, ts_ms: int, gpu: int) -> float:
        """GB/s the simulator put on `gpu`'s links (TX + RX) over the tick ending at ts_ms."""
        times = sorted(self.link_kib)
        at = times.index(ts_ms)
        assert at > 0, "the first tick has no rate"
        before = times[at - 1]
        moved = self.link_kib[ts_ms][gpu] - self.link_kib[before][gpu]
        return moved * 1024 / 1e9 / ((ts_ms - before) / 1000)

    def stop(self) -> None:
        """Stop the poller's threads."""
        self.poller.stop()


__all__ = ["FAULT_AT_S", "LiveRack", "until"]
