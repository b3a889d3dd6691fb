"""Fleet-screen screenshots for screenshots/make.py: N seeded simulated racks, one with a fault, headless.

Each rack is a SimRack read through its fast frame path (collectors.sim.frames.SimRackFrames), polled by
the fleet's own pollers (monitor.fleet.Fleet) on a manual clock: the same rows `monitor demo --racks N`
shows, without serving 1,440 HTTP endpoints to make a picture. Rack k has seed SEED + k - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from collectors.clock import SimClock
from collectors.config import RackConfig
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from monitor.commands.fleet_sim import rack_name, rack_scenarios
from monitor.fleet import Fleet
from monitor.tui.fleet_app import FleetApp

FLEET_TICKS = 75
"""Seconds of simulated history: the scenarios' faults start at 60 s."""


@dataclass(frozen=True)
class FleetShot:
    """One fleet screenshot: how many racks, the --scenario spec, the size, the keys pressed."""

    name: str
    racks: int
    scenario: str
    size: tuple[int, int]
    keys: tuple[str, ...] = ()


FLEET_SHOTS = [
    FleetShot(
        "fleet-16-racks-200x50", 16, "gpu-lost@rack07,nvlink-flap@rack03,endpoint-down@rack12", (200, 50)
    ),
    FleetShot("fleet-4-racks-80x24", 4, "gpu-lost@rack02", (80, 24)),
    FleetShot("fleet-rack07-opened-200x50", 16, "gpu-lost@rack07", (200, 50), ("enter",)),
]


async def take_fleet(shot: FleetShot, start: float, seed: int) -> str:
    """Run the fleet app headless over the shot's racks and return the SVG."""
    clock = SimClock(start=start)
    scenarios = rack_scenarios(shot.scenario, shot.racks)
    sims = {
        rack_name(k): SimRack(seed=seed + k - 1, scenario=s, clock=clock, start=start)
        for k, s in enumerate(scenarios, start=1)
    }
    configs = [RackConfig(name=name) for name in sims]
    fleet = Fleet(configs, lambda config, _every: [SimRackFrames(sims[config.name])], clock=clock)
    try:
        for tick in range(FLEET_TICKS):
            ts_ms = round((start + tick) * 1000)
            for rack in fleet.racks:
                rack.poller.tick(ts_ms)
        app = FleetApp(fleet, fleet_name="sim fleet", title="sim fleet", subtitle=f"seeds {seed}..")
        async with app.run_test(size=shot.size) as pilot:
            for _ in range(400):
                if app.rows_applied:
                    break
                await pilot.pause(0.05)
            for key in shot.keys:
                await pilot.press(key)
            for _ in range(400):
                if not shot.keys or app.frames_applied:
                    break
                await pilot.pause(0.05)
            await pilot.pause()
            return app.export_screenshot(title=f"rack-monitor · {shot.name}")
    finally:
        fleet.stop()
