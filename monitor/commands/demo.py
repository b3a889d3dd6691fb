"""`monitor demo`: the TUI on a simulated GB300 NVL72 rack, through the same code paths a real rack uses."""

from __future__ import annotations

import time

import typer

from collectors.clock import SimClock
from collectors.nvml import NvmlCollector
from collectors.sim import SCENARIOS, SimRack
from monitor.errors import UserError
from monitor.live import run_live


def command(
    scenario: str = typer.Option("steady", help="Fault to play: " + ", ".join(SCENARIOS) + "."),
    seed: int = typer.Option(0, help="Seed of the simulated rack; the same seed plays the same rack."),
    interval: float = typer.Option(1.0, help="Seconds between samples (and screen refreshes)."),
    speed: float = typer.Option(
        1.0, help="Simulated seconds per real second (e.g. 10 to see a fault sooner)."
    ),
) -> None:
    """Show a simulated GB300 NVL72 rack (72 GPUs, 18 trays); no GPU needed."""
    if scenario not in SCENARIOS:
        raise UserError(f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    if interval <= 0 or speed <= 0:
        raise UserError("--interval and --speed must be positive")
    clock = SimClock(start=time.time(), speed=speed)
    rack = SimRack(seed=seed, scenario=scenario, clock=clock)
    sources = [NvmlCollector(tray, name=f"tray{i + 1:02d}") for i, tray in enumerate(rack.trays)]
    run_live(
        sources,
        clock=clock,
        interval=interval,
        title="rack-monitor demo",
        subtitle=f"simulated GB300 NVL72 · scenario {scenario} · seed {seed}",
    )
