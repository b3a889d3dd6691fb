"""Rollups: per-entity 1-minute and 1-hour summaries that keep long windows cheap to read.

For a gauge a bucket keeps min, max, mean and last; for a counter it keeps the first and last raw
values, so rates over rollups still see (and correct for) counter resets between buckets, the way
Thanos' downsampled "counter" aggregate does. Dimension columns (uuid, tray, model, gpus) keep their last
value. Rollup tables are named `<table>_1m` and `<table>_1h` and live in the store like any table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from storage.schemas import COUNTERS, SORT_KEYS, TABLES, TS

ROLLUP_STEPS: dict[str, int] = {"1m": 60_000, "1h": 3_600_000}
"""Rollup resolutions: suffix -> bucket width in ms."""
ROLLED_UP = ("gpu", "nvlink", "serving", "serving_hist", "host")
"""Tables that get rollups (events and processes are sparse and small already)."""
DIMENSIONS = frozenset({"uuid", "tray", "model", "gpus"})
"""Descriptive columns that are not measurements: rolled up as their last value."""


@dataclass(frozen=True)
class RollupSpec:
    """How one table's columns roll up.

    Attributes:
        table: the raw table.
        keys: entity columns grouped by.
        dims: descriptive columns (last value).
        gauges: columns summarised as min, max, mean, last.
        counters: columns summarised as first and last.
    """

    table: str
    keys: tuple[str, ...]
    dims: tuple[str, ...]
    gauges: tuple[str, ...]
    counters: tuple[str, ...]


def spec(table: str) -> RollupSpec:
    """The rollup spec of a raw table in ROLLED_UP."""
    schema = TABLES[table]
    keys = SORT_KEYS[table]
    rest = [f for f in schema if f.name != "ts" and f.name not in keys]
    return RollupSpec(
        table=table,
        keys=keys,
        dims=tuple(f.name for f in rest if f.name in DIMENSIONS),
        gauges=tuple(f.name for f in rest if f.name not in DIMENSIONS and f.name not in COUNTERS[table]),
        counters=tuple(f.name for f in rest if f.name in COUNTERS[table]),
    )


def rollup_name(table: str, step: str) -> str:
    """'gpu_1m' for ('gpu', '1m')."""
    return f"{table}_{step}"


def rollup_schema(table: str) -> pa.Schema:
    """The schema of `<table>_1m` and `<table>_1h`."""
    s = spec(table)
    base = TABLES[table]
    fields = [pa.field("ts", TS, nullable=False)]
    fields += [pa.field(k, base.field(k).type, nullable=False) for k in s.keys]
    fields.append(pa.field("samples", pa.int64(), nullable=False))
    fields += [pa.field(d, base.field(d).type) for d in s.dims]
    for g in s.gauges:
        t = base.field(g).type
        fields += [
            pa.field(f"{g}_min", t),
            pa.field(f"{g}_max", t),
            pa.field(f"{g}_mean", pa.float64()),
            pa.field(f"{g}_last", t),
        ]
    for c in s.counters:
        t = base.field(c).type
        fields += [pa.field(f"{c}_first", t), pa.field(f"{c}_last", t)]
    return pa.schema(fields)


ROLLUP_TABLES: dict[str, pa.Schema] = {
    rollup_name(t, step): rollup_schema(t) for t in ROLLED_UP for step in ROLLUP_STEPS
}
"""Every rollup table by name."""

ROLLUP_SOURCES: dict[str, str] = {rollup_name(t, step): t for t in ROLLED_UP for step in ROLLUP_STEPS}
"""Rollup table -> the raw table it summarises."""


def rollup_sql(table: str, step_ms: int, source: str) -> str:
    """The DuckDB query that rolls `source` (a relation with `table`'s columns) into buckets of step_ms."""
    s = spec(table)
    parts = [f"(epoch_ms(ts) // {step_ms}) * {step_ms} AS ts"]
    parts += [f'"{k}"' for k in s.keys]
    parts.append("count(*) AS samples")
    parts += [f'arg_max("{d}", ts) AS "{d}"' for d in s.dims]
    for g in s.gauges:
        parts += [
            f'min("{g}") AS "{g}_min"',
            f'max("{g}") AS "{g}_max"',
            f'avg("{g}") AS "{g}_mean"',
            f'arg_max("{g}", ts) AS "{g}_last"',
        ]
    for c in s.counters:
        parts += [f'arg_min("{c}", ts) AS "{c}_first"', f'arg_max("{c}", ts) AS "{c}_last"']
    group = ", ".join(["1", *(f'"{k}"' for k in s.keys)])
    order = ", ".join([*(f'"{k}"' for k in s.keys), "1"])
    return f"SELECT {', '.join(parts)} FROM {source} GROUP BY {group} ORDER BY {order}"


def compute_rollup(table: str, step_ms: int, rows: pa.Table | Path) -> pa.Table:
    """Roll raw rows of `table` (a table, or a Parquet file DuckDB streams) into buckets of `step_ms`.

    Returns:
        The rollup rows in the rollup schema, sorted (keys, ts).
    """
    con = duckdb.connect()
    try:
        if isinstance(rows, Path):
            source = f"read_parquet('{_sql_str(rows)}', hive_partitioning=false)"
        else:
            con.register("raw_rows", rows)
            source = "raw_rows"
        result = con.sql(rollup_sql(table, step_ms, source)).to_arrow_table()
    finally:
        con.close()
    schema = rollup_schema(table)
    ts = result.column("ts").cast(pa.int64()).cast(TS)
    result = result.set_column(0, pa.field("ts", TS, nullable=False), ts)
    return result.select(schema.names).cast(schema)


def _sql_str(path: Path) -> str:
    """A path quoted for a SQL string literal."""
    return str(path).replace("'", "''")
