"""Build an N-hour store (default 24) by replicating the hour of a 1 h simulator store in time.

Run: .venv/bin/python bench/make_long_store.py SOURCE OUT [--hours 24]

This is REPLICATED simulator data, not N hours of simulation: every copy holds the same hour of the
simulated rack (the same faults, the same noise), only shifted in time. It exists because backfilling
24 h of the full rack takes far longer than a benchmark should; use it for speed figures over long
windows (bench/bench_export.py --store OUT), never as evidence of what a day of the rack looks like,
and never for sizes beside VictoriaMetrics: its merged per-series blocks span copies and zstd codes the
repeated noise away (0.44 B/sample for gpu on 6 copies against 0.83 on the one hour; docs/benchmarks.md).

How: SOURCE's raw rows (every table, sealed files and segments) are read once in (keys, ts) order.
Copy k is SOURCE's span shifted by k hours (a source of more than an hour: k whole hours it spans);
the copies end at the end of SOURCE's last UTC day, so up to 24 copies fill one day, which the
compactor then merges into a day file. Counters continue
across copies: copy k adds k * D to each series' counter, where D is the series' rise over the
source span (last - first) plus its mean step, so the seam between two copies is an ordinary step,
never a reset nor a lifetime total counted as new work. A series whose counter fell inside the
source span (a reset) gets D = 0: each copy then repeats the source's values, and each seam is one
more reset, handled by the usual rule.

The files are made by the real code: each copy is written as the writer writes segments (one per
clock hour, sorted by keys and ts, storage.segments.write_atomic), published through the store's
manifest (storage.layout.LiveManifest), and storage.compactor.Compactor merges them into hour files
with their 1 min / 1 h rollups and, once the day is complete, into the day file. The manifest is
sealed through the end of the last copy, as a writer that ran on past it would leave it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.compactor import Compactor
from storage.layout import (
    DAY_MS,
    HOUR_MS,
    FileEntry,
    LiveManifest,
    Manifest,
    file_relpath,
    unique_name,
    write_manifest,
)
from storage.reader import StoreReader
from storage.schemas import COUNTERS, SORT_KEYS, TABLES, TS
from storage.segments import write_atomic

STEP_SUFFIX = "__step"
"""Suffix of the per-row helper column holding a counter's per-copy offset D."""


def source_rows(reader: StoreReader, table: str) -> pa.Table:
    """A table's rows in (keys, ts) order, with each counter's per-copy offset D as `<c>__step`."""
    rel = reader.relation(table, None, None)
    keys = SORT_KEYS[table]
    order = ", ".join([*keys, "ts"])
    counters = sorted(COUNTERS[table])
    if not counters:
        return _ms(reader.sql(f"SELECT * FROM {rel} ORDER BY {order}"))
    steps = ", ".join(
        f"CASE WHEN count({c}) > 1 AND arg_max({c}, ts) FILTER (WHERE {c} IS NOT NULL) "
        f">= arg_min({c}, ts) FILTER (WHERE {c} IS NOT NULL) THEN "
        f"(arg_max({c}, ts) FILTER (WHERE {c} IS NOT NULL) - arg_min({c}, ts) FILTER (WHERE {c} IS NOT NULL))"
        f" * count({c}) / (count({c}) - 1) ELSE 0 END AS {c}{STEP_SUFFIX}"
        for c in counters
    )
    on = " AND ".join(f"r.{k} IS NOT DISTINCT FROM d.{k}" for k in keys)
    step_cols = ", ".join(f"d.{c}{STEP_SUFFIX}" for c in counters)
    query = (
        f"WITH d AS (SELECT {', '.join(keys)}, {steps} FROM {rel} GROUP BY ALL) "
        f"SELECT r.*, {step_cols} FROM {rel} r JOIN d ON {on} "
        f"ORDER BY {', '.join('r.' + k for k in keys)}, r.ts"
    )
    return _ms(reader.sql(query))


def _ms(rows: pa.Table) -> pa.Table:
    """The rows with ts in the store's milliseconds (DuckDB hands timestamps back in microseconds)."""
    return rows.set_column(rows.schema.get_field_index("ts"), "ts", rows.column("ts").cast(TS))


def shifted(rows: pa.Table, table: str, copy: int, shift_ms: int) -> pa.Table:
    """Copy `copy` of the rows: ts moved by shift_ms, each counter raised by copy * its step."""
    schema = TABLES[table]
    columns = []
    for f in schema:
        col = rows.column(f.name)
        if f.name == "ts":
            col = pc.add(col.cast(pa.int64()), shift_ms).cast(TS)
        elif f.name in COUNTERS[table]:
            step = rows.column(f"{f.name}{STEP_SUFFIX}")
            rise = pc.multiply(step.cast(pa.float64()), float(copy))
            if pa.types.is_integer(f.type):
                rise = pc.round(rise)
            col = pc.add(col.cast(pa.float64()), rise).cast(f.type)
        columns.append(col)
    return pa.table(columns, schema=schema)


def make_long_store(
    source: Path, out: Path, hours: int = 24, log: Callable[[str], object] = print
) -> Manifest:
    """Write an `hours`-copy store of SOURCE at OUT (a new directory); returns its final manifest."""
    if out.exists():
        raise SystemExit(f"{out} exists: pick a new directory")
    with StoreReader(source) as reader:
        span = reader.time_range("gpu")
        if span is None:
            raise SystemExit(f"{source} holds no GPU rows")
        lo, hi = span
        # One copy per whole hour the source spans (one, for a 1 h store): a shorter source leaves
        # a gap before each copy, which the readers treat as any gap in recording.
        period = -(-(hi - lo + 1000) // HOUR_MS) * HOUR_MS
        end = (hi // DAY_MS + 1) * DAY_MS  # copies end at the end of the source's last UTC day
        first_start = end - hours * period
        rows = {t: source_rows(reader, t) for t in TABLES}
    out.mkdir(parents=True)
    write_manifest(out, Manifest())
    live = LiveManifest(out, Manifest())
    compactor = Compactor(live, grace_s=0.0)
    seq = 0
    for copy in range(hours):
        began = time.perf_counter()
        shift = first_start + (copy + 1) * period - 1000 - hi  # each copy ends its last hour
        written: list[FileEntry] = []
        for table, source_table in rows.items():
            if not source_table.num_rows:
                continue
            part = shifted(source_table, table, copy, shift)
            hour_of = pc.divide(part.column("ts").cast(pa.int64()), HOUR_MS)
            for hour in pc.unique(hour_of).to_pylist():
                piece = part.filter(pc.equal(hour_of, hour))
                seq += 1
                first = int(pc.min(piece.column("ts").cast(pa.int64())).as_py())
                rel = file_relpath(table, hour * HOUR_MS, unique_name("seg", first, seq))
                written.append(
                    write_atomic(
                        out,
                        rel,
                        [piece],
                        table=table,
                        level="seg",
                        schema=TABLES[table],
                        keys=SORT_KEYS[table],
                        counters=COUNTERS[table],
                    )
                )
        copy_end = first_start + (copy + 1) * period - 1
        live.commit(written, sealed_through_ms=copy_end)
        compactor.run_once()
        rows_written = sum(e.rows for e in written)
        log(f"copy {copy + 1}/{hours}: {rows_written:,} rows in {time.perf_counter() - began:.1f} s")
    compactor.run_once()  # the day files, once every hour of the day is in
    return live.current


def main() -> None:
    """Parse the command line and build the store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="A 1 h store of the simulator (read only).")
    parser.add_argument("out", type=Path, help="The new store's directory (must not exist).")
    parser.add_argument("--hours", type=int, default=24, help="Copies of the source's span (default 24).")
    args = parser.parse_args()
    if args.hours < 1:
        raise SystemExit("--hours must be at least 1")
    began = time.perf_counter()
    manifest = make_long_store(args.source, args.out, args.hours)
    levels: dict[str, int] = {}
    for f in manifest.files:
        levels[f.level] = levels.get(f.level, 0) + 1
    print(f"{args.out}: {len(manifest.files)} files {levels} in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
