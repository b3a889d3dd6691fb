"""`monitor query`: one read-only SQL statement over a store's views (gpu, nvlink, serving, host, rollups).

What it allows and refuses is in docs/query.md; the rules live in storage.sandbox.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from datetime import datetime
from typing import Any

import typer

from monitor.commands.options import StoreOption, resolve_store
from monitor.errors import UserError

FORMATS = ("table", "csv", "json")


def command(
    sql: str = typer.Argument(
        ..., help="The SQL to run; views: gpu, nvlink, serving, events, host, *_1m, *_1h."
    ),
    store: StoreOption = None,
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
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
        reader = StoreReader(root)
    except StoreError as err:
        raise UserError(str(err)) from None
    try:
        result = reader.query(sql)
    except QueryRefused as err:
        raise UserError(str(err)) from None
    except duckdb.PermissionException as err:
        raise UserError(f"query refused: {_first_line(err)} (monitor query reads only {root})") from None
    except duckdb.Error as err:
        raise UserError(f"query failed: {_first_line(err)}") from None
    finally:
        reader.close()
    names = result.column_names
    rows = [tuple(r[n] for n in names) for r in result.to_pylist()]
    sys.stdout.write(render(names, rows, fmt))


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


def render(names: list[str], rows: list[tuple[Any, ...]], fmt: str) -> str:
    """Rows as an aligned text table, CSV, or a JSON array of objects."""
    if fmt == "json":
        return json.dumps([{n: _json_value(v) for n, v in zip(names, r, strict=True)} for r in rows]) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_cell(v) for v in r] for r in rows)
        return out.getvalue()
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(n), *(len(c[i]) for c in cells)]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"
