"""`monitor report`: throughput, efficiency, latency, power and the GPUs at fault over a window of history."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from monitor.commands.options import (
    STORE_HELP,
    LastOption,
    SinceOption,
    UntilOption,
    resolve_store,
    stored_window,
)
from monitor.errors import UserError

FORMATS = ("text", "json", "md")


def command(
    store: Annotated[
        Path | None, typer.Option("--store", help=STORE_HELP + " An export bundle works too.")
    ] = None,
    last: LastOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    fmt: str = typer.Option("text", "--format", help="text, json or md."),
) -> None:
    """Summarise a window: sustained tokens/s, per-GPU outliers, tokens per joule, TTFT/ITL, events."""
    from monitor.progress import Progress
    from monitor.report import SUMMARY_STEPS, EmptyReportError, summarize
    from monitor.report_text import render
    from storage.layout import StoreError
    from storage.reader import StoreReader

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    root = resolve_store(store)
    span = stored_window(root, last, since, until)
    try:
        with Progress("report", SUMMARY_STEPS) as progress, StoreReader(root) as reader:
            progress.step("gpus")
            summary = summarize(reader, span, progress)
    except StoreError as err:
        raise UserError(str(err)) from None
    except EmptyReportError as err:
        raise UserError(f"{root}: {err}") from None
    sys.stdout.write(render(summary, fmt))
