"""`monitor import`: a window of a rack's history from its Prometheus-compatible backend into a store.

A shop that runs only dcgm-exporter and Prometheus has no store of ours: this writes one, from the rack's
[promql] config, so `monitor replay`, `report`, `export` and `query` work on it unchanged. The frames are
the PromQL source's own (PromQLSource.history: the same query, the same tick rule, the same mapping as the
live view), and the alert rules run over them as `monitor collect` runs them, so the store holds what a
recorder at the rack would have written from the same samples.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.commands.options import SinceOption, UntilOption
from monitor.errors import UserError

if TYPE_CHECKING:
    from collectors.alert_rules import AlertRules

HISTORY_TIMEOUT_S = 60.0
"""The most one history query (a minute of the rack) may take; a tick's query has the rack's timeout."""


def command(
    config: Annotated[Path, typer.Option("--config", help="Rack config (TOML) with a [promql] table.")],
    store: Annotated[Path, typer.Option("--store", help="The store directory to write (created if new).")],
    last: Annotated[
        str | None, typer.Option("--last", help="The last D before now, e.g. 30m (or --since/--until).")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    interval: float = typer.Option(1.0, "--interval", help="Seconds between ticks in the store."),
) -> None:
    """Read a window of the rack from its query API (the config's [promql]) into a store."""
    from collectors.promql_source import PromqlError, PromQLSource
    from monitor.commands.root import load_rack_config
    from monitor.timespec import iso, parse_window
    from storage.layout import StoreError

    if interval <= 0:
        raise UserError("--interval must be positive")
    rack = load_rack_config(config)
    if rack.promql is None:
        raise UserError(f"{config}: has no [promql] table: nothing to import from (see docs/fleet.md)")
    try:
        window = parse_window(last, since, until)
    except ValueError as err:
        raise UserError(str(err)) from None
    try:
        source = PromQLSource.from_config(rack, timeout_s=max(HISTORY_TIMEOUT_S, rack.timeout_for(interval)))
    except OSError as err:
        raise UserError(f"{config}: promql.bearer_token_file: cannot read: {err.strerror or err}") from None
    began = time.perf_counter()
    try:
        frames, rows = import_window(
            source, store, window.since_ms, window.until_ms, round(interval * 1000), rules=rack.alerts
        )
    except PromqlError as err:
        raise UserError(f"import stopped: {err}") from None
    except StoreError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"cannot write {store}: {err.strerror or err}") from None
    print(
        f"monitor import: {frames:,} ticks ({rows:,} rows) {iso(window.since_ms)} .. {iso(window.until_ms)} "
        f"from {source.url} in {source.queries} queries, {time.perf_counter() - began:.1f} s, into {store}",
        file=sys.stderr,
    )


def import_window(
    source: object, root: Path, since_ms: int, until_ms: int, step_ms: int, *, rules: AlertRules | None = None
) -> tuple[int, int]:
    """Write the source's history frames in [since, until], with the alerts `rules` raise; (frames, rows).

    `rules` are the rack config's [alerts], as `monitor collect` evaluates them (the defaults when None).

    Raises:
        PromqlError: a query failed (what was written before it stays, sealed).
        StoreError: the store cannot be opened for writing.
    """
    from collectors.alert_recorder import AlertRecorder
    from collectors.promql_source import PromQLSource
    from storage.frame import merge_frames
    from storage.writer import StoreWriter

    assert isinstance(source, PromQLSource)
    alerts = AlertRecorder(rules)
    frames = rows = 0
    with StoreWriter(root, compaction="inline", flush_interval_s=600.0, grace_s=0.0) as writer:
        try:
            for frame in source.history(since_ms, until_ms, step_ms):
                merged = merge_frames(frame.ts_ms, [frame, alerts.poll(frame.ts_ms)])
                alerts(merged)
                writer.store(merged)
                frames += 1
                rows += merged.rows
        finally:
            writer.flush()
            writer.compact()
    return frames, rows
