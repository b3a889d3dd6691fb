"""A table's rollup buckets in a window, current to the newest row: the rollup files, then buckets rolled
from raw rows past them (StoreReader.rollup and StoreReader.rollup_table call these).

Rollup files are written when an hour is compacted, and for the open hour only its 1 min buckets up to
the last merge of its segments (counter_rates.rolled_bounds). Buckets past the files are rolled here
from raw rows (segments, parts and the head) by the same SQL the compactor runs; the two meet at a
multiple of the step, so no bucket is missing or counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from storage import counter_rates
from storage.rollups import ROLLED_UP, ROLLUP_STEPS, rollup_name, rollup_sql
from storage.schemas import SORT_KEYS

if TYPE_CHECKING:
    from storage.reading import Reading


def _bounds(reader: Reading, table: str, step: str, since_ms: int, until_ms: int) -> tuple[int, int]:
    """(where the rollup files end, the first bucket start rolled from raw rows): the files hold the
    buckets that start before the first, raw rows the rest up to until_ms."""
    if table not in ROLLED_UP or step not in ROLLUP_STEPS:
        raise ValueError(f"no rollup {table}_{step}")
    reader.refresh()
    step_ms = ROLLUP_STEPS[step]
    rolled = counter_rates.rolled_bounds(reader.manifest, table)[step]
    first_bucket = -(-since_ms // step_ms) * step_ms  # buckets that start in the window
    return rolled, max(rolled, first_bucket)


def rollup_relation(
    reader: Reading, table: str, step: str, since_ms: int, until_ms: int
) -> tuple[str, int | None]:
    """`<table>_<step>` buckets that start in [since_ms, until_ms] as a parenthesised SQL relation in the
    rollup's columns, and the epoch ms from which they were rolled from raw rows (None: the files
    covered the whole window)."""
    rolled, raw_from = _bounds(reader, table, step, since_ms, until_ms)
    parts = []
    if rolled > since_ms:
        filed = reader.relation(rollup_name(table, step), since_ms, min(until_ms, rolled - 1))
        parts.append(f"SELECT * FROM {filed}")
    if raw_from <= until_ms:
        rolled_now = rollup_sql(table, ROLLUP_STEPS[step], reader.relation(table, raw_from, until_ms))
        parts.append(f"SELECT * REPLACE (make_timestamptz(ts * 1000) AS ts) FROM ({rolled_now})")
    if not parts:
        parts.append(f"SELECT * FROM {reader.empty(rollup_name(table, step))}")
    return f"({' UNION ALL BY NAME '.join(parts)})", raw_from if raw_from <= until_ms else None


def rollup_table(
    reader: Reading, table: str, step: str, since_ms: int, until_ms: int, columns: Sequence[str]
) -> tuple[pa.Table, int | None]:
    """The buckets of rollup_relation as Arrow: t (the bucket's start, epoch ms), the series keys and
    `columns`, sorted by keys and t; and the epoch ms from which they were rolled from raw rows.

    The files' buckets come from the reader's cache of decoded rollup files (storage.rollup_files): a
    reader asked again (the TUI's GPU history, a service) runs no DuckDB statement for them, the way
    VictoriaMetrics' rollup result cache answers a repeated range query. Files lacking a column (written
    before it existed) are read through DuckDB, NULL where they lack it.
    """
    import pyarrow.compute as pc  # here: a reader that never asks for buckets needn't hold it

    rolled, raw_from = _bounds(reader, table, step, since_ms, until_ms)
    keys = list(SORT_KEYS[table])
    wanted = [*keys, *columns]
    parts: list[pa.Table] = []
    filed_until = min(until_ms, rolled - 1)
    if rolled > since_ms:
        name = rollup_name(table, step)
        paths = [reader.root / f.path for f in reader.manifest.overlapping(name, since_ms, filed_until)]
        rows = reader.rollup_files.rows(paths, ["ts", *wanted], since_ms, filed_until) if paths else None
        if rows is None and paths:
            listed = ", ".join(f'"{c}"' for c in wanted)
            rel = reader.relation(name, since_ms, filed_until)
            rows = reader.sql(f"SELECT ts, {listed} FROM {rel}")
        if rows is not None:
            t = rows.column("ts").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
            parts.append(rows.select(wanted).add_column(0, "t", t))
    if raw_from <= until_ms:
        rolled_now = rollup_sql(table, ROLLUP_STEPS[step], reader.relation(table, raw_from, until_ms))
        listed = ", ".join(f'"{c}"' for c in wanted)
        parts.append(reader.sql(f"SELECT ts::BIGINT AS t, {listed} FROM ({rolled_now})"))
    if not parts:
        return pa.table({"t": pa.array([], pa.int64())}), None
    schema = parts[0].schema
    out = pa.concat_tables([p.select(schema.names).cast(schema) for p in parts])
    order = pc.sort_indices(out, [(k, "ascending") for k in (*keys, "t")])
    return out.take(order), raw_from if raw_from <= until_ms else None
