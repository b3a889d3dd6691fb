"""`monitor demo`: the TUI on a simulated GB300 NVL72 served over loopback HTTP, the same path as a real rack.

The simulated trays and inference servers listen on free loopback ports (as `monitor sim` does) and the
TUI scrapes them through the rack config those servers describe (as `monitor --config` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collectors.sim import SCENARIOS
from monitor.errors import UserError
from monitor.live import COLOR_HELP, MAX_FPS_HELP, RECORD_HELP


def command(
    scenario: str = typer.Option("steady", help="Fault to play: " + ", ".join(SCENARIOS) + "."),
    seed: int = typer.Option(0, help="Seed of the simulated rack; the same seed plays the same rack."),
    interval: float = typer.Option(
        1.0, help="Real seconds between samples (and screen refreshes), whatever the --speed."
    ),
    speed: float = typer.Option(
        1.0, help="Simulated seconds per real second (e.g. 10 to see a fault sooner)."
    ),
    engine: str = typer.Option("vllm", help="Inference servers' format: vllm, sglang or trtllm."),
    color: str = typer.Option("auto", "--color", help=COLOR_HELP),
    max_fps: int | None = typer.Option(None, "--max-fps", help=MAX_FPS_HELP),
    bell: bool = typer.Option(False, "--bell", help="Ring the terminal bell when an alert fires."),
    store: Annotated[Path | None, typer.Option("--store", help=RECORD_HELP)] = None,
) -> None:
    """Show a simulated GB300 NVL72 rack (72 GPUs, 18 trays, inference servers); no GPU needed."""
    from collectors.alert_rules import AlertRules
    from monitor.commands.root import scrape_source
    from monitor.commands.sim import start_servers
    from monitor.live import apply_terminal_options, run_live

    if interval <= 0:
        raise UserError("--interval must be positive")
    apply_terminal_options(color, max_fps)
    if speed <= 0:
        raise UserError("--speed must be positive")
    servers, clock = start_servers("127.0.0.1", engine=engine, scenario=scenario, seed=seed, speed=speed)
    try:
        config = servers.config
        run_live(
            [scrape_source(config, interval)],
            clock=clock,
            # Samples stay `interval` apart in real time: at --speed 5 one frame covers 5 simulated
            # seconds, so the scraper is not asked for 5 racks a second (it fell behind and every
            # other frame was stand-ins).
            interval=interval * speed,
            title="rack-monitor demo",
            subtitle=f"simulated GB300 NVL72 over loopback HTTP · scenario {scenario} · seed {seed}",
            alerts=AlertRules(bell=bell),
            store=store,
            record=store is not None,
        )
    finally:
        servers.stop()
