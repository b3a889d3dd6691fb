"""`monitor sim --racks N` on a manual clock, scraped over loopback HTTP by the fleet's own pollers.

The stack is `monitor demo --racks N`'s (SimFleetServers on one port, one Poller + ScrapeSource +
AlertRecorder per rack, monitor.fleet.Fleet, FleetApp) with the clock moved one second per tick, so a
fault 5 s in appears after 5 ticks however loaded the machine is: each tick waits for every endpoint's
answer (a generous timeout) instead of a wall-clock deadline.
"""

from __future__ import annotations

import asyncio

from collectors.clock import SimClock
from collectors.scrape import ScrapeSource
from monitor.commands.fleet_sim import SimFleet, start_fleet
from monitor.fleet import Fleet

T0_S = 1_780_000_000.0
FAULT_AT_S = 5.0
GENEROUS_TIMEOUT_S = 60.0
"""Per-endpoint timeout: on a loaded 2-core machine a tick may take seconds; it must not miss a page."""


class LiveFleet:
    """N simulated racks on one loopback port and the fleet that polls them."""

    def __init__(self, racks: int, scenario: str, seed: int = 1, fault_at: float = FAULT_AT_S) -> None:
        """Serve the racks (each its own seed; `scenario` as `--scenario` takes it) and build the fleet."""
        self.clock = SimClock(T0_S)
        self.sim: SimFleet = start_fleet(
            racks,
            "127.0.0.1",
            engine="vllm",
            scenario=scenario,
            seed=seed,
            speed=1.0,
            fault_at=fault_at,
            clock=self.clock,
        )
        try:
            self.fleet = Fleet(
                self.sim.fleet.racks,
                lambda config, _every: [ScrapeSource.from_config(config, timeout_s=GENEROUS_TIMEOUT_S)],
                clock=self.clock,
            )
        except BaseException:
            self.sim.stop()
            raise

    def fault_gpu(self, rack: str) -> int:
        """The GPU the simulator's scenario on `rack` acts on (its own ground truth)."""
        fault = self.sim.servers.racks[rack].rack.scenario.fault
        assert fault is not None and fault.gpu is not None
        return fault.gpu

    async def tick(self) -> None:
        """Advance the clock one second and poll every rack once (in parallel, off the event loop)."""
        self.clock.advance(1.0)
        ts_ms = round(self.clock.now() * 1000)
        await asyncio.gather(*(asyncio.to_thread(r.poller.tick, ts_ms) for r in self.fleet.racks))

    def stop(self) -> None:
        """Stop the pollers (closing their sources), then the servers."""
        self.fleet.stop()
        self.sim.stop()
