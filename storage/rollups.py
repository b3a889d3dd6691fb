"""Rollups: per-entity 1-minute and 1-hour summaries that keep long windows cheap to read.

For a gauge a bucket keeps min, max, mean and last; for a counter it keeps the first and last raw
values and `<c>_inc`, the bucket's reset-corrected increase (Prometheus' rule: a sample below its
predecessor means the counter restarted from 0, so the new value is the increase), the way Thanos'
downsampled "counter" aggregate does. With `first_ms`/`last_ms` (the bucket's first and last sample
times) that makes a rate over whole buckets equal to the rate over their raw rows. `<c>_inc` is NULL
where the counter is NULL at the bucket's first or last sample (its times are then not the counter's),
and in files written before it existed: readers fall back to raw rows or last - first there.
Dimension columns (uuid, tray, model, gpus) keep their last value. Rollup tables are named
`<table>_1m` and `<table>_1h` and live in the store like any table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from storage.increase import step_sql
from storage.schemas import COUNTERS, GROWTH_COUNTS, SORT_KEYS, TABLES, TS
from storage.sql_text import string_literal, ts_literal

if TYPE_CHECKING:
    from storage.layout import FileEntry

ROLLUP_STEPS: dict[str, int] = {"1m": 60_000, "1h": 3_600_000}
"""Rollup resolutions: suffix -> bucket width in ms."""
ROLLED_UP = ("gpu", "nvlink", "serving", "serving_hist", "host")
"""Tables that get rollups (events and processes are sparse and small already)."""
OPEN_STEP = "1m"
"""The step rolled up while an hour is still open: the compactor writes these buckets as 'part' files each
time it merges the hour's segments (every few minutes), so a window over the open hour reads raw rows only
for its newest minutes; the hour file's own rollups replace them when the hour is compacted."""
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
        counters: columns summarised as first, last and reset-corrected increase.
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
    fields += [pa.field("first_ms", pa.int32()), pa.field("last_ms", pa.int32())]
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
        fields += [pa.field(f"{c}_first", t), pa.field(f"{c}_last", t), pa.field(f"{c}_inc", t)]
    if table in GROWTH_COUNTS:
        fields.append(pa.field(GROWTH_COUNTS[table][0], pa.int32()))
    return pa.schema(fields)


ROLLUP_TABLES: dict[str, pa.Schema] = {
    rollup_name(t, step): rollup_schema(t) for t in ROLLED_UP for step in ROLLUP_STEPS
}
"""Every rollup table by name."""

ROLLUP_SOURCES: dict[str, str] = {rollup_name(t, step): t for t in ROLLED_UP for step in ROLLUP_STEPS}
"""Rollup table -> the raw table it summarises."""


def open_rolled_until(parts: Iterable[FileEntry], hour_ms: int) -> int:
    """Epoch ms before which the open hour starting at `hour_ms` has its OPEN_STEP buckets in 'part' files
    (`parts`: the rollup table's files; others are ignored); `hour_ms` when it has none.

    The compactor rolls contiguous runs of minutes, each from where this says the last one ended, from
    the hour's start on, so every minute before the newest bucket's end is rolled: one with no bucket had
    no rows. A trailing minute with no rows is not claimed (it is rolled again next time, finding none).
    """
    step_ms, hour_end = ROLLUP_STEPS[OPEN_STEP], hour_ms + ROLLUP_STEPS["1h"]
    ends = [f.max_ts + step_ms for f in parts if f.level == "part" and hour_ms <= f.min_ts < hour_end]
    return max(ends, default=hour_ms)


def rollup_sql(table: str, step_ms: int, source: str) -> str:
    """The DuckDB query that rolls `source` (a relation with `table`'s columns) into buckets of step_ms."""
    s = spec(table)
    keys = [f'"{k}"' for k in s.keys]
    group = ", ".join(["bucket", *keys])
    parts = ["bucket AS ts", *keys, "count(*) AS samples"]
    # Offsets from the bucket start fit int32 and dictionary-encode to almost nothing (1 Hz sampling
    # puts them at a handful of values), where full timestamps would cost bytes per row.
    parts += [
        "(epoch_ms(min(ts)) - bucket)::INTEGER AS first_ms",
        "(epoch_ms(max(ts)) - bucket)::INTEGER AS last_ms",
    ]
    parts += [f'arg_max("{d}", ts) AS "{d}"' for d in s.dims]
    for g in s.gauges:
        parts += [
            f'min("{g}") AS "{g}_min"',
            f'max("{g}") AS "{g}_max"',
            f'avg("{g}") AS "{g}_mean"',
            f'arg_max("{g}", ts) AS "{g}_last"',
        ]
    bucketed = f"SELECT *, (epoch_ms(ts) // {step_ms}) * {step_ms} AS bucket FROM {source}"
    lags, incs = [], []
    for c in s.counters:
        prev = f'"{c}__prev"'
        parts += [f'arg_min("{c}", ts) AS "{c}_first"', f'arg_max("{c}", ts) AS "{c}_last"']
        lags.append(f'lag("{c}" IGNORE NULLS) OVER w AS {prev}')
        delta = step_sql(f'"{c}"', prev)
        valued = f'"{c}" IS NOT NULL'
        # The increase goes with first_ms/last_ms only where those are the counter's own sample times.
        whole = f"min(ts) FILTER (WHERE {valued}) = min(ts) AND max(ts) FILTER (WHERE {valued}) = max(ts)"
        incs.append(f'CASE WHEN {whole} THEN coalesce(sum({delta}), 0) END AS "{c}_inc"')
    grew = _growth_count(table)
    incs += [grew] if grew else []
    main = f"SELECT {', '.join(parts)} FROM ({bucketed}) GROUP BY {group}"
    if not s.counters:
        return f"{main} ORDER BY {', '.join([*keys, 'ts'])}"
    # The lag() window sorts its input, so it sees only the columns it needs (carrying every gauge
    # through the sort made the rollup 5x slower), and its per-bucket sums are joined back.
    narrow = ", ".join(["bucket", *keys, "ts", *(f'"{c}"' for c in s.counters)])
    window = f"PARTITION BY {group} ORDER BY ts"
    lagged = f"SELECT {narrow}, {', '.join(lags)} FROM ({bucketed}) WINDOW w AS ({window})"
    inc = f"SELECT {group}, {', '.join(incs)} FROM ({lagged}) GROUP BY {group}"
    out = ", ".join(["m.*", *(f'i."{c}_inc"' for c in s.counters)])
    if grew:
        out += f', i."{GROWTH_COUNTS[table][0]}"'
    on = " AND ".join(["m.ts = i.bucket", *(f"m.{k} = i.{k}" for k in keys)])
    order = ", ".join([*(f"m.{k}" for k in keys), "m.ts"])
    return f"SELECT {out} FROM ({main}) m JOIN ({inc}) i ON {on} ORDER BY {order}"


def _growth_count(table: str) -> str | None:
    """The aggregate of GROWTH_COUNTS' column for `table` over the lagged rows (None: it has none).

    lag(IGNORE NULLS) pairs a sample with the last one that had the counter, so this counts every
    sample the rule (which pairs neighbours only) counts, and possibly more: an upper bound, which is
    all a reader may use it as."""
    if table not in GROWTH_COUNTS:
        return None
    name, counters = GROWTH_COUNTS[table]
    steps = " + ".join(f"""coalesce({step_sql(f'"{c}"', f'"{c}__prev"')}, 0)""" for c in counters)
    return f'count(*) FILTER (WHERE {steps} > 0)::INTEGER AS "{name}"'


def compute_rollup(
    table: str, step_ms: int, rows: pa.Table | Path | Sequence[Path], between: tuple[int, int] | None = None
) -> pa.Table:
    """Roll raw rows of `table` (a table, or Parquet files DuckDB streams) into buckets of `step_ms`.

    Args:
        between: only rows with lo <= ts < hi (epoch ms), both multiples of step_ms.

    Returns:
        The rollup rows in the rollup schema, sorted (keys, ts).
    """
    import duckdb  # here, not at the top: a writer imports this module's names, and only compaction rolls up

    con = duckdb.connect()
    try:
        # DuckDB draws a progress bar on stdout for a statement past 2 s: a loaded recorder's hour
        # rollup would write one into `monitor collect`'s output and the journal.
        con.execute("SET enable_progress_bar = false")
        if isinstance(rows, pa.Table):
            con.register("raw_rows", rows)
            source = "raw_rows"
        else:
            listed = ", ".join(string_literal(p) for p in ([rows] if isinstance(rows, Path) else rows))
            source = f"read_parquet([{listed}], hive_partitioning=false)"
        if between is not None:
            since, until = (ts_literal(ms) for ms in between)  # pushed down
            source = f"(SELECT * FROM {source} WHERE ts >= {since} AND ts < {until})"
        result = con.sql(rollup_sql(table, step_ms, source)).to_arrow_table()
    finally:
        con.close()
    schema = rollup_schema(table)
    ts = result.column("ts").cast(pa.int64()).cast(TS)
    result = result.set_column(0, pa.field("ts", TS, nullable=False), ts)
    return result.select(schema.names).cast(schema)
