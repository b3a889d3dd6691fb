"""`monitor sim --racks N` and `monitor demo --racks N`: N simulated racks behind one loopback HTTP port.

Rack k (1-based) is named `rackNN`, has seed `seed + k - 1` (so the racks differ) and plays the steady
scenario unless the scenario names it: `--scenario gpu-lost@rack07` plays gpu-lost on rack07 only,
`--scenario gpu-lost` on every rack, and `gpu-lost@rack07,xid@rack02` one fault on each of two racks.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.commands.options import check_scenario, sim_listen
from monitor.errors import UserError

MAX_SIM_RACKS = 64
"""The most racks `monitor sim` simulates (64 racks = 4,608 GPUs, 5,760 endpoints on one port)."""
FAULT_AT_S = 60.0
"""Simulated seconds after the start at which a rack's scenario fault begins (collectors.sim.SimRack)."""


def rack_name(k: int) -> str:
    """'rack01' for rack 1."""
    return f"rack{k:02d}"


def rack_scenarios(spec: str, racks: int) -> list[str]:
    """The scenario of each rack from `--scenario` (see the module docstring).

    Raises:
        UserError: an unknown scenario or rack, or a rack named twice (one line).
    """
    if not 1 <= racks <= MAX_SIM_RACKS:
        raise UserError(f"--racks must be 1..{MAX_SIM_RACKS}, not {racks}")
    names = [rack_name(k) for k in range(1, racks + 1)]
    if "@" not in spec:
        check_scenario(spec)
        return [spec] * racks
    scenarios = ["steady"] * racks
    named: set[str] = set()
    for part in spec.split(","):
        scenario, at, target = part.strip().partition("@")
        if not at or not target:
            raise UserError(
                f"--scenario {part!r}: write SCENARIO@RACK (e.g. gpu-lost@rack03), comma-separated"
            )
        check_scenario(scenario)
        if target not in names:
            raise UserError(f"--scenario {part!r}: no rack {target!r} (racks are {names[0]}..{names[-1]})")
        if target in named:
            raise UserError(f"--scenario: rack {target} is named twice")
        named.add(target)
        scenarios[names.index(target)] = scenario
    return scenarios


@dataclass
class SimFleet:
    """The running simulated fleet: its servers, its clock, each rack's scenario and the fleet config."""

    servers: Any
    clock: Any
    scenarios: list[str]
    fleet: Any
    fault_wall_s: float
    """Wall-clock epoch seconds at which the scenarios' faults begin (at --speed 1)."""

    def stop(self) -> None:
        """Stop serving."""
        self.servers.stop()


def start_fleet(
    racks: int,
    listen: str,
    *,
    engine: str,
    scenario: str,
    seed: int,
    speed: float,
    fault_at: float = FAULT_AT_S,
    clock: Any = None,
) -> SimFleet:
    """Build `racks` simulated racks and serve them on one port (on `clock`: a SimClock, or one at `speed`).

    Raises:
        UserError: a bad option or an address that cannot be bound (one line).
    """
    from collectors.clock import SimClock
    from collectors.fleet_config import FleetConfig
    from collectors.sim import SimRack
    from collectors.sim.fleet_http import SimFleetServers

    scenarios = rack_scenarios(scenario, racks)
    host, port = sim_listen(engine, speed, listen)
    clock = clock or SimClock(start=time.time(), speed=speed)
    start = clock.now()
    sims = [
        (
            rack_name(k),
            SimRack(seed=seed + k - 1, scenario=s, clock=clock, engines=(engine,), fault_at=fault_at),
        )
        for k, s in enumerate(scenarios, start=1)
    ]
    servers = SimFleetServers(sims, host=host, port=port)
    try:
        configs = servers.start()
    except OSError as err:
        raise UserError(f"cannot serve the simulated fleet on {listen}: {err.strerror or err}") from None
    fleet = FleetConfig(name=f"sim-fleet-seed{seed}", racks=configs)
    return SimFleet(servers, clock, scenarios, fleet, start + fault_at / speed)


def faults_text(sim: SimFleet) -> str:
    """'gpu-lost on rack07 from 09:12:03 UTC' (or 'all racks steady')."""
    faulty = [(rack_name(k), s) for k, s in enumerate(sim.scenarios, start=1) if s != "steady"]
    if not faulty:
        return "all racks steady"
    at = datetime.fromtimestamp(sim.fault_wall_s, tz=UTC).strftime("%H:%M:%S UTC")
    if len(faulty) == len(sim.scenarios) and len({s for _, s in faulty}) == 1:
        return f"{faulty[0][1]} on every rack from {at}"
    return ", ".join(f"{s} on {name}" for name, s in faulty) + f" from {at}"


def serve_fleet(
    racks: int, listen: str, config_path: Path | None, *, engine: str, scenario: str, seed: int, speed: float
) -> None:
    """`monitor sim --racks N`: serve until SIGINT/SIGTERM, writing the fleet config first if asked."""
    from collectors.config import ConfigError
    from collectors.fleet_config import write_fleet
    from monitor.commands.agent import wait_for_signal

    sim = start_fleet(racks, listen, engine=engine, scenario=scenario, seed=seed, speed=speed)
    try:
        if config_path is not None:
            timed = replace(
                sim.fleet, racks=tuple(replace(r, timeout_s=r.timeout_for(1.0)) for r in sim.fleet.racks)
            )
            try:
                write_fleet(config_path, timed)
            except ConfigError as err:
                raise UserError(str(err)) from None
        print(
            f"monitor sim: {racks} racks ({racks * 18} tray agents, {racks * 72} {engine} servers) on "
            f"{sim.servers.host} port {sim.servers.port} under /rack01.. (seed {seed}..{seed + racks - 1}; "
            f"{faults_text(sim)})" + (f"; fleet config in {config_path}" if config_path is not None else ""),
            file=sys.stderr,
            flush=True,
        )
        wait_for_signal()
    finally:
        sim.stop()


def demo_fleet(
    racks: int, *, engine: str, scenario: str, seed: int, speed: float, interval: float, max_fps: int | None
) -> None:
    """`monitor demo --racks N`: the simulated fleet and the fleet screen over it."""
    from monitor.commands.root import scrape_source
    from monitor.live import run_fleet

    sim = start_fleet(racks, "127.0.0.1", engine=engine, scenario=scenario, seed=seed, speed=speed)
    try:
        run_fleet(
            sim.fleet.racks,
            lambda config, every: [scrape_source(config, every)],
            fleet_name="sim fleet",
            clock=sim.clock,
            interval=interval * speed,
            subtitle=f"simulated GB300 NVL72 racks over loopback HTTP · {faults_text(sim)} · seed {seed}",
            max_fps=max_fps,
        )
    finally:
        sim.stop()
