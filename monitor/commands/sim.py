"""`monitor sim`: the simulated GB300 NVL72; `--backfill D --store DIR` writes D of simulated history fast."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from monitor.commands.query import resolve_store
from monitor.errors import UserError


def command(
    backfill: str | None = typer.Option(
        None, "--backfill", help="Write this much history (e.g. 24h), then exit."
    ),
    store: Annotated[
        Path | None, typer.Option("--store", help="Store directory (or $MONITOR_STORE).")
    ] = None,
    scenario: str = typer.Option("steady", "--scenario", help="The sim scenario to play."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated rack."),
    interval: str = typer.Option("1s", "--interval", help="Time between simulated samples."),
    exact: bool = typer.Option(
        False,
        "--exact",
        help="Backfill through the NVML driver path (a collector per simulated tray, ~10x slower, "
        "no serving rows) instead of the fast path.",
    ),
) -> None:
    """Serve the simulated rack, or (with --backfill) write simulated history into a store."""
    if backfill is None:
        raise UserError(
            "serving the simulated rack is not available yet: use `monitor sim --backfill 24h --store DIR`"
        )
    run_backfill(backfill, store, scenario, seed, interval, exact=exact)


def run_backfill(
    duration: str, store: Path | None, scenario: str, seed: int, interval: str, *, exact: bool = False
) -> None:
    """The --backfill branch: validate, write, report one line per simulated hour on stderr."""
    from monitor.backfill import backfill, parse_duration
    from storage.layout import StoreError

    root = resolve_store(store)
    try:
        seconds = parse_duration(duration, "--backfill duration")
        step = parse_duration(interval, "--interval")
    except ValueError as err:
        raise UserError(str(err)) from None
    try:
        from collectors.sim import SCENARIOS
    except ImportError as err:
        raise UserError(f"the simulator is not available in this build ({err})") from None
    if scenario not in SCENARIOS:
        raise UserError(f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def progress(done: int, total: int) -> None:
        print(f"monitor sim: {done}/{total} ticks written", file=sys.stderr)

    try:
        result = backfill(
            root, seconds, scenario=scenario, seed=seed, interval_s=step, on_progress=progress, exact=exact
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
