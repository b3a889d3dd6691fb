"""Arrow schemas of the store's tables: the one contract between sources, the store and the views.

The columns themselves are declared in storage.columns (plain data, no pyarrow), with the codes their
values use (GpuState, EndpointState, EventKind); this module builds each table's Arrow schema from them
and keeps what the store needs beside: sort keys, counters, and how files of older layouts conform.
"""

from __future__ import annotations

import pyarrow as pa

from storage import columns
from storage.columns import Q4_SCALE, EndpointState, EventKind, GpuState

__all__ = ["Q4_SCALE", "EndpointState", "EventKind", "GpuState"]

TS = pa.timestamp("ms", tz="UTC")
"""Every table's time column: epoch milliseconds, UTC, snapped to the tick that produced the row."""

ARROW_TYPES: dict[str, pa.DataType] = {
    "ts": TS,
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
}
"""The Arrow type of each storage.columns type name."""


def _schema(table: tuple[columns.Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type], nullable=c.nullable) for c in table])


GPU = _schema(columns.GPU)
"""One row per GPU per tick."""
NVLINK = _schema(columns.NVLINK)
"""One row per GPU per NVLink link per tick (72 x 18 = 1,296 rows a tick)."""
EVENTS = _schema(columns.EVENTS)
PROCESSES = _schema(columns.PROCESSES)
SERVING = _schema(columns.SERVING)
SERVING_HIST = _schema(columns.SERVING_HIST)
HOST = _schema(columns.HOST)

TABLES: dict[str, pa.Schema] = {name: _schema(table) for name, table in columns.TABLES.items()}
"""Every table a Frame may carry, by name (storage.columns.TABLES says what each column holds)."""

SORT_KEYS: dict[str, tuple[str, ...]] = {
    "gpu": ("gpu",),
    "nvlink": ("gpu", "link"),
    "events": (),
    "processes": ("gpu", "pid"),
    "serving": ("endpoint", "engine"),
    "serving_hist": ("endpoint", "metric", "le"),
    "host": ("host",),
}
"""The entity of each row. Segments are sorted by these columns, then ts; compacted files by 10-minute
time band first, then these, then ts, so a short window reads only its band's row groups."""

COUNTERS: dict[str, frozenset[str]] = {
    "gpu": frozenset({"energy_mj", "ecc_corrected", "ecc_uncorrected", "nvlink_tx_kib", "nvlink_rx_kib"}),
    "nvlink": frozenset({"tx_kib", "rx_kib", "rx_errors", "symbol_errors", "recovery", "recovery_failed"}),
    "events": frozenset(),
    "processes": frozenset(),
    "serving": frozenset(
        {"prompt_tokens", "generation_tokens", "requests_ok", "preemptions", "cached_tokens"}
    ),
    "serving_hist": frozenset({"count", "sum_s"}),
    "host": frozenset({"disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes"}),
}
"""Monotonic columns that may reset (driver reload, server restart): rates come from these at read time."""

NVLINK_ERRORS = ("rx_errors", "symbol_errors", "recovery", "recovery_failed")
"""The nvlink counters that count trouble, each its own series: the live link_errors alert, the link view
and the report's link faults watch these."""

GROWTH_COUNTS: dict[str, tuple[str, tuple[str, ...]]] = {"nvlink": ("errors_grew", NVLINK_ERRORS)}
"""Rollup columns that count a bucket's samples (after its first) in which any of the named counters grew:
what the link_errors rule counts, so the report can rule out a minute whose errors rose by a lot in
one sample without reading its raw rows (`_inc` counts errors, not samples)."""


def conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """`rows` in `schema`: columns in its order and types, a missing one as nulls.

    Files written before a column existed (a rollup's `_inc` or `errors_grew`) are read beside newer
    ones; a NULL there means "not recorded", which readers already treat as unknown."""
    for field in schema:
        if field.name not in rows.column_names:
            rows = rows.append_column(field.name, pa.nulls(rows.num_rows, field.type))
    return rows.select(schema.names).cast(schema)


def empty_batch(table: str) -> pa.RecordBatch:
    """An empty record batch of a table's schema."""
    return pa.RecordBatch.from_pylist([], schema=TABLES[table])
