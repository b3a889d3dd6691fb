"""`monitor replay PATH`: the TUI over a store directory or an export bundle, at a moving time cursor."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.commands.options import STORE_ENV, resolve_store
from monitor.errors import UserError

if TYPE_CHECKING:
    from monitor.replay_session import ReplaySession
    from monitor.view.layout import GpuLayout
    from storage.reader import StoreReader


@dataclass
class Opened:
    """A replay ready to show: the reader and session, and the words for the totals bar."""

    reader: StoreReader
    session: ReplaySession
    title: str
    subtitle: str
    root: Path
    layout: GpuLayout


def stored_layout(reader: StoreReader) -> GpuLayout:
    """The rack, unless the store holds a board host's GPUs (tray 0: `collect --nvml` on an HGX host),
    which then replay as that board (GPU0..GPU7, counted of their own number). Row groups of a rack's
    store (tray >= 1) are skipped by their Parquet statistics, so asking costs next to nothing."""
    from monitor.view.layout import RACK, board_layout

    rows = reader.sql(f"SELECT DISTINCT gpu FROM {reader.relation('gpu')} WHERE tray = 0").to_pylist()
    return board_layout([r["gpu"] for r in rows]) if rows else RACK


def bundle_subtitle(root: Path) -> str:
    """'export 2025-06-15T14:00:00Z to ...' for an export bundle, else the store's path."""
    from monitor.bundle import EXPORT_FORMAT, EXPORT_MANIFEST

    try:
        doc = json.loads((root / EXPORT_MANIFEST).read_text())
        if doc.get("format") == EXPORT_FORMAT:
            return f"export {doc['window']['since']} to {doc['window']['until']}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # not a bundle (or a damaged EXPORT.json): the store itself still replays
    return str(root)


def open_replay(path: Path | None, *, at: str | None = None, speed: float = 1.0) -> Opened:
    """Open PATH (or $MONITOR_STORE) for replay, checking everything a user can get wrong.

    Raises:
        UserError: one line: no path, not a store, a newer store, an empty store, a bad --at or --speed.
    """
    from monitor.replay import SPEEDS, EmptyStoreError, ReplayState, parse_goto, speed_label
    from monitor.replay_session import ReplaySession
    from storage.head import Head
    from storage.layout import StoreError
    from storage.reader import StoreReader

    if speed not in SPEEDS:
        raise UserError(f"bad --speed {speed:g}: use one of {', '.join(speed_label(s) for s in SPEEDS)}")
    root = resolve_store(path, how="PATH (a store or an export bundle)")
    try:
        reader = StoreReader(root)
    except StoreError as err:
        raise UserError(str(err)) from None
    try:
        session = ReplaySession(reader, Head(), speed=speed)
        if at is not None:
            ticks = session.cursor.ticks
            state = ReplayState(ticks[0], ticks[0], ticks[-1], speed, playing=False)
            session.seek_to(parse_goto(at, state))
    except EmptyStoreError as err:
        reader.close()
        raise UserError(f"{err}; record some with `monitor collect` or `monitor sim --backfill`") from None
    except ValueError as err:
        reader.close()
        raise UserError(f"--at: {err}") from None
    layout = stored_layout(reader)
    return Opened(reader, session, "rack-monitor replay", bundle_subtitle(root), root, layout)


def command(
    path: Annotated[
        Path | None,
        typer.Argument(help=f"A store directory or an export bundle (default: ${STORE_ENV})."),
    ] = None,
    at: str | None = typer.Option(
        None,
        "--at",
        help="Start here: HH:MM[:SS] (UTC), ISO 8601 with a zone, +D from the start, or end "
        "(default: the recording's first tick, a bundle's own start).",
    ),
    speed: float = typer.Option(1.0, "--speed", help="Playback speed: 0.25, 0.5, 1, 2, 4, 8 or 16."),
    play: bool = typer.Option(False, "--play", help="Start playing at once (default: paused)."),
) -> None:
    """Replay a recorded rack in the TUI: play/pause, step, seek, go to a time, 0.25x-16x."""
    opened = open_replay(path, at=at, speed=speed)
    from monitor.tui.replay_app import ReplayApp

    if play:
        opened.session.play()
    app = ReplayApp(
        opened.session, title=opened.title, subtitle=opened.subtitle, store=opened.root, layout=opened.layout
    )
    from monitor.tui.hangup import Teardown, run_until_hangup

    run_until_hangup(app, Teardown(opened.session.close, opened.reader.close))
