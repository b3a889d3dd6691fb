"""`monitor query`: one read-only SQL statement over a store's views (gpu, nvlink, serving, host, rollups).

What it allows and refuses is in docs/query.md; the rules live in storage.sandbox.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import typer

from monitor.commands.options import StoreOption, resolve_store
from monitor.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("table", "csv", "json")
MAX_ROWS = 10_000
"""Rows the table format prints: it holds them all to align the columns."""
TIMEOUT_S = 300.0
MEMORY_LIMIT = "25%"
"""Of the machine's RAM: DuckDB's own default, 80 %, is not for a head node that also records."""


def command(
    sql: str = typer.Argument(
        ..., help="The SQL to run; views: gpu, nvlink, serving, events, host, *_1m, *_1h."
    ),
    store: StoreOption = None,
    fmt: str = typer.Option("table", "--format", help="table, csv or json (csv and json stream every row)."),
    max_rows: int = typer.Option(
        MAX_ROWS, "--max-rows", min=1, help="Rows the table format prints (it counts them all)."
    ),
    timeout_s: float = typer.Option(
        TIMEOUT_S, "--timeout", min=0.001, help="Seconds before the query is stopped."
    ),
    memory_limit: str = typer.Option(
        MEMORY_LIMIT, "--memory-limit", help="DuckDB's memory limit (2GB, 25%); past it, it spills to disk."
    ),
) -> None:
    """Run one read-only SQL statement over a store, while it is being written (see docs/query.md)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    root = resolve_store(store)
    import duckdb  # only here: `monitor --help` stays fast

    from storage.layout import StoreError
    from storage.reader import StoreReader
    from storage.sandbox import QueryRefused

    try:
        reader = StoreReader(root, memory_limit=memory_limit)
    except StoreError as err:
        raise UserError(str(err)) from None
    try:
        con = reader.con  # connected here, so a bad --memory-limit is named as such
    except duckdb.Error as err:
        reader.close()
        raise UserError(f"--memory-limit {memory_limit!r}: {_first_line(err)}") from None
    # On a head node beside the recorder, a runaway query must end, not take the machine's memory.
    stop = threading.Timer(timeout_s, con.interrupt)
    stop.start()
    try:
        batches = reader.query_batches(sql)
        write = {"table": _write_table, "csv": _write_csv, "json": _write_json}[fmt]
        write(batches, sys.stdout, max_rows)
    except QueryRefused as err:
        raise UserError(str(err)) from None
    except duckdb.PermissionException as err:
        raise UserError(f"query refused: {_first_line(err)} (monitor query reads only {root})") from None
    except duckdb.InterruptException:
        raise UserError(f"query stopped after {timeout_s:g} s (--timeout)") from None
    except duckdb.OutOfMemoryException as err:
        raise UserError(f"query needs more than --memory-limit {memory_limit}: {_first_line(err)}") from None
    except duckdb.Error as err:
        raise UserError(f"query failed: {_first_line(err)}") from None
    finally:
        stop.cancel()
        reader.close()


def _rows(batches: pa.RecordBatchReader) -> Iterator[tuple[Any, ...]]:
    """Every row of the stream, a batch at a time."""
    names = batches.schema.names
    for batch in batches:
        for row in batch.to_pylist():
            yield tuple(row[n] for n in names)


def _write_table(batches: pa.RecordBatchReader, out: TextIO, max_rows: int) -> None:
    """The first `max_rows` rows aligned, and how many the result has."""
    rows: list[tuple[Any, ...]] = []
    total = 0
    for row in _rows(batches):
        total += 1
        if len(rows) < max_rows:
            rows.append(row)
    out.write(render_table(batches.schema.names, rows, total))


def _write_csv(batches: pa.RecordBatchReader, out: TextIO, _max_rows: int) -> None:
    """Every row: CSV streams, whatever --max-rows says."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(batches.schema.names)
    for row in _rows(batches):
        writer.writerow([_cell(v) for v in row])


def _write_json(batches: pa.RecordBatchReader, out: TextIO, _max_rows: int) -> None:
    """Every row, as one JSON array of objects, written as the rows come."""
    names = batches.schema.names
    out.write("[")
    for i, row in enumerate(_rows(batches)):
        out.write(
            (", " if i else "") + json.dumps({n: _json_value(v) for n, v in zip(names, row, strict=True)})
        )
    out.write("]\n")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _cell(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def render_table(names: list[str], rows: list[tuple[Any, ...]], total: int | None = None) -> str:
    """Rows as an aligned text table. `total`: the result's rows, when `rows` holds only the first of
    them (the table says how many it left out)."""
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(n), *(len(c[i]) for c in cells)]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    total = len(rows) if total is None else total
    shown = "" if total == len(rows) else f"; the first {len(rows):,} shown: --max-rows N, or --format csv"
    lines.append(f"({total:,} row{'s' if total != 1 else ''}{shown})")
    return "\n".join(lines) + "\n"
