"""`monitor report`: throughput, efficiency, latency, power and the GPUs at fault over a window of history."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from monitor.commands.query import STORE_HELP, resolve_store
from monitor.errors import UserError

FORMATS = ("text", "json", "md")


def command(
    store: Annotated[
        Path | None, typer.Option("--store", help=STORE_HELP + " An export bundle works too.")
    ] = None,
    last: str | None = typer.Option(None, "--last", help="The window ending now, e.g. 1h."),
    since: str | None = typer.Option(None, "--since", help="Window start: ISO 8601 with a zone, now-2h, 2h."),
    until: str | None = typer.Option(None, "--until", help="Window end (default: now)."),
    fmt: str = typer.Option("text", "--format", help="text, json or md."),
) -> None:
    """Summarise a window: sustained tokens/s, per-GPU outliers, tokens per joule, TTFT/ITL, events."""
    from monitor.report import EmptyReportError, render, summarize
    from monitor.timespec import parse_window
    from storage.layout import StoreError
    from storage.reader import StoreReader

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    root = resolve_store(store)
    try:
        window = parse_window(last, since, until)
    except ValueError as err:
        raise UserError(str(err)) from None
    try:
        with StoreReader(root) as reader:
            summary = summarize(reader, window)
    except StoreError as err:
        raise UserError(str(err)) from None
    except EmptyReportError as err:
        raise UserError(f"{root}: {err}") from None
    sys.stdout.write(render(summary, fmt))
