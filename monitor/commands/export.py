"""`monitor export`: a window of history as a self-describing bundle (a store, EXPORT.json, report.html)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from monitor.commands.options import (
    LastOption,
    SinceOption,
    StoreOption,
    UntilOption,
    resolve_store,
    stored_window,
)
from monitor.errors import UserError


def command(
    out: Annotated[Path, typer.Option("-o", "--out", help="The bundle directory to create.")],
    store: StoreOption = None,
    last: LastOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    gpus: str | None = typer.Option(None, "--gpus", help="GPUs to keep: 0,5,8-11,T03.G2,T05 (default: all)."),
    tables: str | None = typer.Option(
        None, "--tables", help="Tables to keep, e.g. gpu,events (default: all)."
    ),
    fmt: str = typer.Option("parquet", "--format", help="parquet, or csv/json for text copies beside it."),
    force: bool = typer.Option(
        False, "--force", help="Replace OUT if it is a bundle an earlier export wrote (and nothing else)."
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Skip report.html."),
) -> None:
    """Cut a window of history into a bundle that DuckDB, `monitor query` and `monitor report` read."""
    from monitor.export import FORMATS, EmptyWindowError, export, parse_gpus, parse_tables
    from storage.atomic import OutputError
    from storage.layout import StoreError

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    root = resolve_store(store)
    span = stored_window(root, last, since, until)
    try:
        picked = parse_gpus(gpus) if gpus is not None else None
        chosen = parse_tables(tables) if tables is not None else None
    except ValueError as err:
        raise UserError(str(err)) from None
    if out.resolve() == root.resolve():
        raise UserError(f"{out} is the store itself; name a new directory for the bundle")
    try:
        result = export(
            root, out, span, gpus=picked, tables=chosen, fmt=fmt, force=force, with_report=not no_report
        )
    except (StoreError, EmptyWindowError, OutputError) as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    rows = sum(result.rows.values())
    print(
        f"monitor export: {rows:,} rows in {result.files} files ({result.bytes / 1e6:.1f} MB) "
        f"to {result.out} in {result.seconds:.1f} s",
        file=sys.stderr,
    )
