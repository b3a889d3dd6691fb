"""`monitor demo`: the TUI on a simulated GB300 NVL72 served over loopback HTTP, the same path as a real rack.

The simulated trays and inference servers listen on free loopback ports (as `monitor sim` does) and the
TUI scrapes them through the rack config those servers describe (as `monitor --config` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collectors.sim.scenarios import SCENARIOS
from monitor.errors import UserError
from monitor.terminal import COLOR_HELP, MAX_FPS_HELP, RECORD_HELP, apply_terminal_options


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
    hgx: bool = typer.Option(
        False,
        "--hgx",
        help="Instead, what `monitor` shows on an 8-GPU H100 HGX host (local NVML, no platform info).",
    ),
    racks: int = typer.Option(
        0,
        "--racks",
        help="A fleet of N simulated racks on the fleet screen (--scenario S@rack03: a fault on one rack).",
    ),
) -> None:
    """Show a simulated GB300 NVL72 rack (72 GPUs, 18 trays, inference servers); no GPU needed."""
    from collectors.alert_rules import AlertRules
    from monitor.commands.root import scrape_source
    from monitor.commands.sim import start_servers
    from monitor.live import run_live

    if interval <= 0:
        raise UserError("--interval must be positive")
    apply_terminal_options(color, max_fps)
    if speed <= 0:
        raise UserError("--speed must be positive")
    if racks:
        if hgx or store is not None:
            raise UserError("--racks shows a fleet of simulated racks; it takes neither --hgx nor --store")
        from monitor.commands.fleet_sim import demo_fleet

        demo_fleet(
            racks,
            engine=engine,
            scenario=scenario,
            seed=seed,
            speed=speed,
            interval=interval,
            max_fps=max_fps,
        )
        return
    if hgx:
        _hgx_demo(scenario=scenario, seed=seed, interval=interval, speed=speed, bell=bell, store=store)
        return
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


def _hgx_demo(
    *, scenario: str, seed: int, interval: float, speed: float, bell: bool, store: Path | None
) -> None:
    """Local mode over a simulated 8-GPU HGX host: the NVML collector on SimRack.hgx_host(), as `monitor`
    runs it on such a host, with the host's own layout (GPU0..GPU7, no rack)."""
    import time

    from collectors.alert_rules import AlertRules
    from collectors.clock import SimClock
    from collectors.nvml import NvmlCollector
    from collectors.sim import SimRack
    from monitor.commands.local_nvml import describe
    from monitor.commands.options import check_scenario
    from monitor.live import run_live
    from monitor.view.layout import host_layout

    check_scenario(scenario)
    clock = SimClock(start=time.time(), speed=speed)
    rack = SimRack(seed=seed, scenario=scenario, clock=clock)
    collector = NvmlCollector(rack.hgx_host(), name="sim-hgx")
    run_live(
        [collector],
        clock=clock,
        interval=interval * speed,
        title="rack-monitor demo",
        subtitle=f"sim-hgx · {describe(collector)} · local NVML, simulated · seed {seed}",
        alerts=AlertRules(bell=bell),
        store=store,
        record=store is not None,
        layout=host_layout(collector.gpus),
    )
