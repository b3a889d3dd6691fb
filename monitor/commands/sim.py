"""`monitor sim`: the simulated GB300 NVL72; `--backfill D --store DIR` writes D of simulated history fast."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from monitor.commands.options import StoreOption, check_scenario, resolve_store, seconds, sim_listen
from monitor.errors import UserError


def command(
    backfill: str | None = typer.Option(
        None, "--backfill", help="Write this much history (e.g. 24h), then exit."
    ),
    store: StoreOption = None,
    scenario: str = typer.Option("steady", "--scenario", help="The sim scenario to play."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated rack."),
    interval: str = typer.Option("1s", "--interval", help="Time between simulated samples."),
    exact: bool = typer.Option(
        False,
        "--exact",
        help="Backfill through the NVML driver path (a collector per simulated tray, ~10x slower, "
        "no serving rows) instead of the fast path.",
    ),
    listen: str = typer.Option(
        "127.0.0.1",
        "--listen",
        help="Address to serve on; HOST:PORT uses ports PORT.. (default: free ports).",
    ),
    write_config: Annotated[
        Path | None,
        typer.Option("--write-config", help="Write the rack config (TOML) pointing at the servers."),
    ] = None,
    engine: str = typer.Option("vllm", "--engine", help="Inference servers' format: vllm, sglang or trtllm."),
    speed: float = typer.Option(1.0, "--speed", help="Simulated seconds per real second (serving)."),
    down: str = typer.Option(
        "refuse", "--down", help="How a stopped server fails (endpoint-down): refuse or hang."
    ),
    racks: int = typer.Option(
        0,
        "--racks",
        help="Serve N simulated racks on one port under /rack01/.. (seeds SEED..SEED+N-1); "
        "--scenario S@rack03 plays S on rack03 only; --write-config writes the fleet config.",
    ),
) -> None:
    """Serve the simulated rack on loopback HTTP, or (with --backfill) write simulated history to a store."""
    if racks:
        if backfill is not None:
            raise UserError(
                "--racks serves racks over HTTP; --backfill writes one rack's history: choose one"
            )
        from monitor.commands.fleet_sim import serve_fleet

        serve_fleet(racks, listen, write_config, engine=engine, scenario=scenario, seed=seed, speed=speed)
        return
    if backfill is None:
        serve(listen, write_config, engine=engine, scenario=scenario, seed=seed, speed=speed, down=down)
        return
    run_backfill(backfill, store, scenario, seed, interval, exact=exact)


def start_servers(
    listen: str, *, engine: str, scenario: str, seed: int, speed: float, down: str = "refuse"
) -> tuple[Any, Any]:
    """Build the simulated rack and start its 90 servers; returns (servers, clock).

    Raises:
        UserError: a bad option or an address that cannot be bound (one line).
    """
    from collectors.clock import SimClock
    from collectors.sim import SimRack
    from collectors.sim.http import SimServers

    check_scenario(scenario)
    host, base_port = sim_listen(engine, speed, listen)
    if down not in ("refuse", "hang"):
        raise UserError(f"--down {down!r}: choose refuse or hang")
    clock = SimClock(start=time.time(), speed=speed)
    rack = SimRack(seed=seed, scenario=scenario, clock=clock, engines=(engine,))
    servers = SimServers(rack, host=host, base_port=base_port or None, down_mode=down)  # type: ignore[arg-type]
    try:
        servers.start()
    except OSError as err:
        raise UserError(f"cannot serve the simulated rack on {listen}: {err.strerror or err}") from None
    return servers, clock


def serve(
    listen: str, config_path: Path | None, *, engine: str, scenario: str, seed: int, speed: float, down: str
) -> None:
    """The serving branch: 18 tray agents + the inference servers until SIGINT/SIGTERM."""
    from dataclasses import replace

    from collectors.config import ConfigError, write_config
    from monitor.commands.agent import wait_for_signal

    servers, _clock = start_servers(
        listen, engine=engine, scenario=scenario, seed=seed, speed=speed, down=down
    )
    try:
        config = servers.config
        if config_path is not None:
            try:
                # the default timeout written out, so the file shows what a collector will wait
                write_config(config_path, replace(config, timeout_s=config.timeout_for(1.0)))
            except ConfigError as err:
                raise UserError(str(err)) from None
        ports = servers.ports
        print(
            f"monitor sim: {len(config.trays)} tray agents and {len(config.servers)} {engine} servers on "
            f"{servers.host} ports {min(ports)}..{max(ports)} (scenario {scenario}, seed {seed})"
            + (f"; config in {config_path}" if config_path is not None else ""),
            file=sys.stderr,
            flush=True,
        )
        wait_for_signal()
    finally:
        servers.stop()


def run_backfill(
    duration: str, store: Path | None, scenario: str, seed: int, interval: str, *, exact: bool = False
) -> None:
    """The --backfill branch: validate, write, report one line per simulated hour on stderr."""
    from monitor.backfill import backfill
    from storage.layout import StoreError

    root = resolve_store(store)
    span_s = seconds(duration, "--backfill duration")
    step = seconds(interval, "--interval")
    check_scenario(scenario)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def progress(done: int, total: int) -> None:
        print(f"monitor sim: {done}/{total} ticks written", file=sys.stderr)

    try:
        result = backfill(
            root, span_s, scenario=scenario, seed=seed, interval_s=step, on_progress=progress, exact=exact
        )
    except StoreError as err:
        raise UserError(str(err)) from None
    first = datetime.fromtimestamp(result.first_ms / 1000, tz=UTC).isoformat(timespec="seconds")
    last = datetime.fromtimestamp(result.last_ms / 1000, tz=UTC).isoformat(timespec="seconds")
    print(
        f"monitor sim: wrote {result.ticks} ticks ({result.rows} rows, {first} .. {last}) "
        f"to {root} in {result.seconds:.1f} s",
        file=sys.stderr,
    )
