"""`monitor snapshot`: one atomic capture of the rack for schedulers (exit 0 ok, 1 failed, 2 unhealthy)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from monitor.commands.options import check_scenario, seconds
from monitor.errors import UserError


def command(
    out: Annotated[Path, typer.Option("--out", help="Directory that holds the snapshots.")],
    config: Annotated[Path | None, typer.Option("--config", help="Rack config (TOML) to scrape.")] = None,
    sim: bool = typer.Option(False, "--sim", help="Capture the simulated GB300 NVL72 instead."),
    check: bool = typer.Option(False, "--check", help="Exit 2 if the rack is unhealthy."),
    keep: int = typer.Option(96, "--keep", help="Keep the newest N snapshots."),
    interval: str = typer.Option("1s", "--interval", help="Time between the two samples."),
    scenario: str = typer.Option("steady", "--scenario", help="Sim scenario (with --sim)."),
    seed: int = typer.Option(0, "--seed", help="Sim seed (with --sim)."),
) -> None:
    """Capture the rack once into OUT (a small store and a JSON summary), keep the newest N; quiet if fine."""
    from monitor.snapshot import EXIT_UNHEALTHY, config_capture, sim_capture, snapshot
    from storage.layout import StoreError

    if (config is None) == (not sim):
        raise UserError("pass exactly one of --config FILE or --sim")
    if keep < 1:
        raise UserError(f"--keep must be at least 1, not {keep}")
    step = seconds(interval, "--interval")
    if sim:
        check_scenario(scenario)
        capture, source = sim_capture(scenario, seed, step), f"sim (scenario {scenario}, seed {seed})"
    else:
        from monitor.commands.root import load_rack_config

        assert config is not None
        # a bad config is one line before anything is written
        capture, source = config_capture(load_rack_config(config), step), str(config)
    try:
        result = snapshot(out, capture, keep=keep, source=source)
    except StoreError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"snapshot to {out} failed: {err.strerror or err}") from None
    if check and result.issues:
        print(
            f"monitor snapshot: {result.bundle.name}: unhealthy: {'; '.join(result.issues)}", file=sys.stderr
        )
        raise typer.Exit(EXIT_UNHEALTHY)
