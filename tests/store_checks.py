"""Checks on recorded data that every recording test runs: no (table keys, ts) stored twice.

Written independently of storage.row_keys and the writer's guard: DuckDB GROUP BY over the Parquet
files the manifest lists, and a plain Counter over the head's rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb

from storage.head import Head
from storage.layout import read_manifest
from storage.rollups import ROLLUP_SOURCES
from storage.schemas import SORT_KEYS


def _keys(table: str) -> tuple[str, ...]:
    return SORT_KEYS[ROLLUP_SOURCES.get(table, table)]


def store_duplicates(root: Path) -> dict[str, list[tuple[object, ...]]]:
    """Table -> the (keys..., ts, count) groups stored more than once, over every live file of the store."""
    manifest = read_manifest(root)
    found: dict[str, list[tuple[object, ...]]] = {}
    for table in sorted({f.table for f in manifest.files}):
        keys = _keys(table)
        if not keys:
            continue  # events: several per tick are normal
        files = [str(root / f.path) for f in manifest.of(table)]
        columns = ", ".join(f'"{k}"' for k in (*keys, "ts"))
        rows = duckdb.sql(
            f"SELECT {columns}, count(*) AS n FROM read_parquet({files!r}) "
            f"GROUP BY {columns} HAVING n > 1 ORDER BY ts LIMIT 20"
        ).fetchall()
        if rows:
            found[table] = rows
    return found


def head_duplicates(head: Head) -> dict[str, list[tuple[object, ...]]]:
    """Table -> the (keys..., ts) held more than once across the head's frames."""
    counts: dict[str, Counter[tuple[object, ...]]] = {}
    for frame in head.frames():
        for table, batch in frame.batches.items():
            keys = SORT_KEYS[table]
            if not keys:
                continue
            columns = [batch.column(k).to_pylist() for k in (*keys, "ts")]
            counts.setdefault(table, Counter()).update(zip(*columns, strict=True))
    return {
        t: [k for k, n in c.items() if n > 1][:20]
        for t, c in counts.items()
        if any(n > 1 for n in c.values())
    }


def assert_no_duplicate_rows(root: Path | None = None, head: Head | None = None) -> None:
    """Fail naming the tables and keys stored twice, in the store at `root` and/or in `head`."""
    problems: dict[str, object] = {}
    if root is not None:
        problems.update({f"store {t}": rows for t, rows in store_duplicates(root).items()})
    if head is not None:
        problems.update({f"head {t}": rows for t, rows in head_duplicates(head).items()})
    assert not problems, f"(keys, ts) rows held twice: {problems}"
