"""StoreReader: an in-memory DuckDB over the manifest's files plus (optionally) the live head.

No file lock is taken and nothing is written, so any number of readers (the TUI, export, snapshot
jobs, `monitor query`) run beside the one writer. The connection is locked (storage.sandbox): it
opens files only inside the store, loads no extension, and no statement can change that.

Views name only files listed in the manifest, which is swapped atomically and whose superseded
files outlive a grace period, so a query sees every row once: never a partial file, never a
compacted file together with its inputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from storage import counter_rates
from storage.head import Head
from storage.layout import MANIFEST, Manifest, read_manifest
from storage.rollup_files import DEFAULT_MAX_BYTES, RollupFiles
from storage.rollup_read import rollup_relation, rollup_table
from storage.rollups import ROLLUP_TABLES
from storage.schemas import TABLES
from storage.sql_text import identifier, string_literal, ts_literal
from storage.window_pieces import window_rates

if TYPE_CHECKING:
    import duckdb

    from storage.sandbox import LockedConnection

VIEWS: tuple[str, ...] = (*TABLES, *ROLLUP_TABLES)
"""Every view a reader defines: the raw tables and their _1m/_1h rollups."""


def _unknown_table() -> type[BaseException]:
    """DuckDB's error for a name that is no table or view (imported here: see _vanished)."""
    import duckdb

    return duckdb.CatalogException


def _vanished() -> tuple[type[BaseException], ...]:
    """The errors of a file removed under a reader that slept past its grace period. DuckDB is imported
    here, not at the top: a reader that answers from the rollup cache never needs it (25 MiB resident)."""
    import duckdb

    return (duckdb.IOException, FileNotFoundError)


class StoreReader:
    """Read-only SQL over a store.

    Args:
        root: the store directory.
        head: the writer's head in this process, to see rows not sealed yet; None for sealed only.
        threads: DuckDB threads (default: DuckDB's choice, one per core).
        memory_limit: DuckDB's memory limit, e.g. '256MB' (default: DuckDB's, 80 % of RAM).
        cache_bytes: the bound of the decoded rollup files kept for counter increases (0: none kept).

    Raises:
        NotAStoreError, StoreVersionError: `root` is not a store this code can read.
    """

    def __init__(
        self,
        root: Path | str,
        head: Head | None = None,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        cache_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """Open `root` for reading."""
        self.rollup_files = RollupFiles(cache_bytes)
        self.root = Path(root)
        self.head = head
        self._manifest: Manifest = read_manifest(self.root)
        self._stamp: tuple[int, int, int] | None = self._manifest_stamp()
        self._head_version = -1
        self._connection_options = (threads, memory_limit)
        self._locked: LockedConnection | None = None
        self._empties: set[str] = set()
        self._views = False

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, made on first use; its views (one per table) come with the first
        statement that names one (_bound) or any SQL a user typed (query, query_batches).

        Not at open: a connection costs about 25 MiB resident before any query (DuckDB's catalog),
        and a reader answering counter increases from rollups (storage/pieces.py) may never need one.
        Views are not made with it either: binding them reads every file's footer (65 ms on a live
        store's 37 minutes, more on a month of files), and the report, export and views read through
        relation(), which names only the files a window needs.
        """
        if self._locked is None:
            from storage.sandbox import LockedConnection  # imports DuckDB: see _vanished

            self._locked = LockedConnection([self.root], *self._connection_options)
            self._empties.clear()
        return self._locked.con

    def empty(self, name: str) -> str:
        """The name of an empty relation in table `name`'s schema (raw or rollup), registered on the
        connection the first time it is asked for: registering all 17 at connect cost ~20 ms of every
        reader's first statement, and a window over files that exist needs none."""
        registered = f"_empty_{name}"
        if name not in self._empties:
            schema = TABLES.get(name) or ROLLUP_TABLES[name]
            self.con.register(registered, pa.table({f.name: pa.array([], f.type) for f in schema}))
            self._empties.add(name)
        return registered

    def close(self) -> None:
        """Close the DuckDB connection (if one was made)."""
        self.rollup_files.clear()
        if self._locked is not None:
            self._locked.close()
            self._locked = None

    def __enter__(self) -> StoreReader:
        """Use as a context manager; close() on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the reader."""
        self.close()

    @property
    def manifest(self) -> Manifest:
        """The manifest the views are built on."""
        return self._manifest

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.root / MANIFEST)
        except FileNotFoundError:
            return None
        # The writer replaces the file, so a new inode means a new manifest.
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self, force: bool = False) -> bool:
        """Rebuild the views if the manifest or the head changed; return True if they were rebuilt."""
        stamp = self._manifest_stamp()
        manifest_changed = force or stamp != self._stamp
        head_changed = self.head is not None and self.head.version != self._head_version
        if not manifest_changed and not head_changed:
            return False
        if manifest_changed:
            self._manifest = read_manifest(self.root)
            self._stamp = stamp
        if self.head is not None:
            self._head_version = self.head.version
        if self._views:  # else they are built when first named, from the manifest of then
            self._build_views()
        return True

    def _ensure_views(self) -> None:
        if not self._views:
            self._build_views()
            self._views = True

    def _bound(self, query: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """self.con.sql(query), with the views built first where it names one that is not there yet."""
        try:
            return self.con.sql(query, params=params or None)
        except _unknown_table():
            if self._views:
                raise
            self._ensure_views()
            return self.con.sql(query, params=params or None)

    def _build_views(self) -> None:
        sealed = self._manifest.sealed_through_ms
        if self.head is not None:
            self._head_version = self.head.version
        for name in VIEWS:
            parts = []
            files = self._manifest.of(name)
            if files:
                parts.append(self._files_sql([f.path for f in files]))
            if self.head is not None and name in TABLES:
                rows = self.head.table(name, since_ms=sealed)
                if rows.num_rows:
                    self.con.register(f"_head_{name}", rows)
                    parts.append(f"SELECT * FROM _head_{name}")
            if not parts:
                parts.append(f"SELECT * FROM {self.empty(name)}")
            self.con.execute(
                f"CREATE OR REPLACE VIEW {identifier(name)} AS {' UNION ALL BY NAME '.join(parts)}"
            )

    def _files_sql(self, paths: Sequence[str]) -> str:
        listed = ", ".join(string_literal(self.root / p) for p in paths)
        # union_by_name: rollups written before counter `_inc` columns existed sit beside newer ones.
        return f"SELECT * FROM read_parquet([{listed}], hive_partitioning = false, union_by_name = true)"

    def relation(self, table: str, since_ms: int | None = None, until_ms: int | None = None) -> str:
        """A parenthesised SQL relation over one table's rows with since_ms <= ts <= until_ms.

        Unlike the full view, it names only the files whose time range overlaps the window, so a
        query over the last minutes opens a handful of files, not a month's.
        """
        if table not in VIEWS:
            raise ValueError(f"no table {table!r}; tables: {', '.join(VIEWS)}")
        parts = []
        files = self._manifest.overlapping(table, since_ms, until_ms)
        if files:
            parts.append(self._files_sql([f.path for f in files]))
        if self.head is not None and table in TABLES:
            rows = self.head.table(table, since_ms=self._manifest.sealed_through_ms)
            if rows.num_rows:
                self.con.register(f"_win_{table}", rows)
                parts.append(f"SELECT * FROM _win_{table}")
        if not parts:
            parts.append(f"SELECT * FROM {self.empty(table)}")
        conds = []
        if since_ms is not None:
            conds.append(f"ts >= {ts_literal(since_ms)}")
        if until_ms is not None:
            conds.append(f"ts <= {ts_literal(until_ms)}")
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        return f"(SELECT * FROM ({' UNION ALL BY NAME '.join(parts)}){where})"

    def rollup(self, table: str, step: str, since_ms: int, until_ms: int) -> tuple[str, int | None]:
        """`<table>_<step>` buckets that start in [since_ms, until_ms], current up to the newest row, as a
        SQL relation, and where raw rows took over (storage.rollup_read.rollup_relation)."""
        return rollup_relation(self, table, step, since_ms, until_ms)

    def rollup_table(
        self, table: str, step: str, since_ms: int, until_ms: int, columns: Sequence[str]
    ) -> tuple[pa.Table, int | None]:
        """The same buckets as Arrow (t, keys, `columns`), the files' from the rollup cache
        (storage.rollup_read.rollup_table)."""
        return rollup_table(self, table, step, since_ms, until_ms, columns)

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run a query over the views (refreshed first) and return its rows as Arrow.

        A file can vanish under a reader that slept past the grace period; the query is then
        retried once over the newest manifest.
        """
        self.refresh()
        try:
            return self._run(query, params)
        except _vanished():
            if not self.refresh(force=True):
                raise
            return self._run(query, params)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """Run a query over the views (refreshed first) and return its rows as Python tuples.

        DuckDB converts straight to Python objects, without an Arrow table in between: cheaper in
        time and memory when the caller wants Python values anyway.
        """
        self.refresh()
        try:
            return self._bound(query).fetchall()
        except _vanished():
            if not self.refresh(force=True):
                raise
            return self._bound(query).fetchall()

    def settings(self) -> dict[str, str]:
        """DuckDB's threads and memory_limit for this reader, as DuckDB reports them."""
        got = self.con.sql(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('threads', 'memory_limit')"
        ).fetchall()
        return {str(k): str(v) for k, v in got}

    def query(self, text: str) -> pa.Table:
        """Run SQL a user typed: exactly one read-only statement (storage.sandbox), else QueryRefused."""
        from storage.sandbox import read_only_statement

        statement = read_only_statement(text)
        self.refresh()
        self._ensure_views()  # SHOW TABLES and information_schema list them too
        return self.sql(statement)

    def query_batches(self, text: str, rows_per_batch: int = 65_536) -> pa.RecordBatchReader:
        """query(), streamed: the rows in batches, so a caller holds one batch, not the whole result."""
        from storage.sandbox import read_only_statement

        statement = read_only_statement(text)
        self.refresh()
        self._ensure_views()  # as query() does
        rel = self.con.sql(statement)
        if rel is None:
            return pa.RecordBatchReader.from_batches(pa.schema([]), [])
        return rel.to_arrow_reader(rows_per_batch)

    def _run(self, query: str, params: Sequence[Any] | None) -> pa.Table:
        rel = self._bound(query, params)
        # Statements such as SET or CREATE VIEW return no relation.
        return rel.to_arrow_table() if rel is not None else pa.table({})

    def time_range(self, table: str = "gpu") -> tuple[int, int] | None:
        """(min ts, max ts) in epoch ms over sealed files and the head, or None when empty.

        From the manifest (each file's exact bounds, written with it) and the head's rows: no file is
        opened."""
        self.refresh()
        spans = [(f.min_ts, f.max_ts) for f in self._manifest.of(table) if f.rows]
        if self.head is not None and table in TABLES:
            rows = self.head.table(table, since_ms=self._manifest.sealed_through_ms)
            if rows.num_rows:
                import pyarrow.compute as pc  # here, not at import: 9 MiB

                ends = pc.min_max(rows.column("ts").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()))
                spans.append((int(ends["min"].as_py()), int(ends["max"].as_py())))
        if not spans:
            return None
        return min(lo for lo, _ in spans), max(hi for _, hi in spans)

    def rate(
        self,
        table: str,
        column: str,
        since_ms: int,
        until_ms: int,
        *,
        step_ms: int | None = None,
        resolution: str = "raw",
        rollups: bool = True,
        series: str | None = None,
    ) -> pa.Table:
        """Per-second rate of a counter per entity (and per step), with counter-reset detection.

        As in Prometheus, a sample lower than its predecessor means the counter restarted from 0,
        so the increase over that pair is the new value itself. The increase and seconds are sums
        over consecutive samples in the window (no extrapolation to its edges).

        Args:
            table: a raw table with counters (gpu, nvlink, serving, serving_hist, host).
            column: the counter column.
            since_ms: window start (epoch ms).
            until_ms: window end (epoch ms, included).
            step_ms: one row per entity per step (multiples of step_ms from epoch) when given; one
                row per entity otherwise.
            resolution: "raw" for the exact answer over raw samples; "1m"/"1h" to read only that
                rollup's buckets (whole buckets the window touches; a reset inside a bucket is missed
                in files written before rollups kept `_inc`).
            rollups: with "raw", read whole compacted buckets from the rollups (same answer, a few
                buckets instead of every row); False reads every raw row.
            series: a SQL condition on the entity key columns (say "metric IN ('ttft', 'itl')"):
                only those series are read, raw and rollup rows alike.

        Returns:
            Columns: the entity keys, ts (the step's start, when stepped), increase, seconds, rate.
        """
        kw = {"step_ms": step_ms, "resolution": resolution, "rollups": rollups, "series": series}
        return self.rates(table, [column], since_ms, until_ms, **kw).drop_columns(["counter"])  # type: ignore[arg-type]

    def rates(
        self,
        table: str,
        columns: Sequence[str],
        since_ms: int,
        until_ms: int,
        *,
        step_ms: int | None = None,
        resolution: str = "raw",
        rollups: bool = True,
        series: str | None = None,
    ) -> pa.Table:
        """rate() of several counters of one table in one statement: their raw rows are read once.

        Returns:
            Columns: the entity keys, counter (the column's name), ts (when stepped), increase, seconds,
            rate; one row per entity and counter (and step), each counter its own series.
        """
        self.refresh()
        args = (table, columns, since_ms, until_ms, step_ms, resolution, rollups, series)
        try:
            return window_rates(self, *args)
        except _vanished():
            # A file removed after its grace period under a reader that slept: once more, newest manifest.
            if not self.refresh(force=True):
                raise
            return window_rates(self, *args)

    def series_relation(self, series: str) -> counter_rates.Relation:
        """StoreReader.relation narrowed to the rows of some series (raw and rollup tables share keys)."""

        def relation(table: str, since_ms: int, until_ms: int) -> str:
            return f"(SELECT * FROM {self.relation(table, since_ms, until_ms)} WHERE {series})"

        return relation
