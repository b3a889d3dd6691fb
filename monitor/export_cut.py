"""A store file's rows of a window, by row group: whole groups copied as bytes, only edge groups re-encoded.

The store's compacted files hold one 10-minute time band per row group (storage.segments), each in
(keys, ts) order. A window's rows of such a file are then (a) row groups wholly inside the window,
copied byte for byte (monitor.parquet_splice: no decoding, no compression), and (b) the few row groups
that straddle one of the window's two edges, read, filtered by ts and written again. Filtering keeps
the rows' order, so nothing is sorted, and a row group of the cut still holds one band. Which group is
which comes from the ts statistics in the file's footer; no row outside the window is ever written.

The tasks of every file are independent, so they run on a small thread pool: pyarrow and file copies
release the GIL, so both cores work.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from monitor.parquet_splice import SpliceRefused, copy_row_groups, read_footer
from storage.atomic import atomic_file
from storage.bands import table_band_ms, table_layout, table_schema
from storage.layout import FileEntry
from storage.row_order import row_group_ts_spans
from storage.schemas import TS, conform
from storage.segments import write_atomic
from storage.sql_text import string_literal, ts_literal

if TYPE_CHECKING:
    import duckdb

WORKERS = max(1, min(2, os.cpu_count() or 1))
"""Threads cutting files at once: the machines this runs on have two cores to spare at best."""


@dataclass(frozen=True)
class FilePlan:
    """One store file's row groups against a window.

    Attributes:
        entry: the file.
        whole: row groups wholly inside the window (copied), in file order.
        edge: row groups with rows on both sides of an edge (re-encoded), in file order.
        bounds: (min ts, max ts) in epoch ms of each row group, by index.
        bytes: compressed bytes of each row group, by index (for the progress bar).
    """

    entry: FileEntry
    whole: tuple[int, ...]
    edge: tuple[int, ...]
    bounds: tuple[tuple[int, int], ...]
    bytes: tuple[int, ...]

    @property
    def work(self) -> int:
        """Bytes to handle, edge groups weighted by their decode and re-encode (the slow part)."""
        return sum(self.bytes[i] for i in self.whole) + 8 * sum(self.bytes[i] for i in self.edge)


def plan_file(root: Path, entry: FileEntry, since_ms: int, until_ms: int) -> FilePlan:
    """Sort a file's row groups into whole, edge and outside by their ts statistics."""
    meta = pq.read_metadata(root / entry.path)
    whole, edge, bounds, sizes = [], [], [], []
    for rg, span in enumerate(row_group_ts_spans(meta)):
        group = meta.row_group(rg)
        lo, hi = span or (entry.min_ts, entry.max_ts)  # no statistics: take the file's bounds (cut it)
        bounds.append((lo, hi))
        sizes.append(group.total_byte_size)
        if group.num_rows == 0 or hi < since_ms or lo > until_ms:
            continue
        (whole if since_ms <= lo and hi <= until_ms else edge).append(rg)
    return FilePlan(entry, tuple(whole), tuple(edge), tuple(bounds), tuple(sizes))


def _named(entry: FileEntry, prefix: str) -> str:
    return str(Path(entry.path).with_name(f"{prefix}-{Path(entry.path).name}"))


def copy_whole(source_root: Path, root: Path, plan: FilePlan) -> FileEntry | None:
    """The plan's whole row groups as `cut-<name>`, byte for byte; None when it has none.

    Raises:
        SpliceRefused: the file cannot be spliced (the caller re-encodes those groups instead).
    """
    if not plan.whole:
        return None
    source = source_root / plan.entry.path
    footer = read_footer(source)
    relpath = _named(plan.entry, "cut")
    target = root / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as fh:
        rows = copy_row_groups(source, footer, plan.whole, fh)
    return FileEntry(
        table=plan.entry.table,
        path=relpath,
        level=plan.entry.level,
        rows=rows,
        min_ts=min(plan.bounds[i][0] for i in plan.whole),
        max_ts=max(plan.bounds[i][1] for i in plan.whole),
        bytes=target.stat().st_size,
    )


def _band_span(
    plan: FilePlan, groups: tuple[int, ...], since_ms: int, until_ms: int
) -> tuple[int, int] | None:
    """The time span (epoch ms) of `groups`' rows in the window, when no other row group of the file has
    rows in it (so a ts filter selects exactly theirs); None otherwise."""
    lo = max(since_ms, min(plan.bounds[g][0] for g in groups))
    hi = min(until_ms, max(plan.bounds[g][1] for g in groups))
    others = [g for g, (a, b) in enumerate(plan.bounds) if g not in groups and a <= hi and b >= lo]
    return None if others else (lo, hi)


def _edge_chunks(
    source: Path,
    plan: FilePlan,
    groups: tuple[int, ...],
    since_ms: int,
    until_ms: int,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Iterator[pa.Table]:
    """The window's rows of `groups`, one chunk per time band (each band starts a row group).

    With `con` (a DuckDB connection of this job's own) and groups of one band that no other row group
    overlaps in time, DuckDB reads them with the ts filter pushed into its scan: it decodes the other
    columns only where the filter keeps rows, half pyarrow's CPU for a 10-minute band of histograms
    (decode, filter and cast: 0.60 -> 0.30 s). DuckDB keeps the file's row order (preserve_insertion_order,
    set by storage.sandbox), so the band stays sorted by (keys, ts).
    """
    span = _band_span(plan, groups, since_ms, until_ms) if con is not None else None
    if con is not None and span is not None:
        path = string_literal(source)
        rows = con.sql(
            f"SELECT * FROM read_parquet({path}, hive_partitioning = false) "
            f"WHERE ts >= {ts_literal(span[0])} AND ts <= {ts_literal(span[1])}"
        ).to_arrow_table()
        yield conform(rows, table_schema(plan.entry.table))
        return
    band_ms = table_band_ms(plan.entry.table)
    runs: list[list[int]] = []
    for rg in groups:
        band = plan.bounds[rg][0] // band_ms
        if runs and plan.bounds[runs[-1][-1]][0] // band_ms == band and runs[-1][-1] == rg - 1:
            runs[-1].append(rg)
        else:
            runs.append([rg])
    schema = table_schema(plan.entry.table)
    lo, hi = pa.scalar(since_ms, pa.int64()).cast(TS), pa.scalar(until_ms, pa.int64()).cast(TS)
    # Strings are read as dictionaries (the store writes them dictionary-encoded): decoding, filtering
    # and then casting back to plain strings is about a third of the CPU of decoding them plain.
    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    with pq.ParquetFile(source, read_dictionary=strings) as parquet:
        for run in runs:
            rows = parquet.read_row_groups(run)
            ts = rows.column("ts")
            # A filter keeps the rows' order: each band stays sorted by (keys, ts), as in the store.
            yield conform(rows.filter(pc.and_(pc.greater_equal(ts, lo), pc.less_equal(ts, hi))), schema)


def cut_edges(
    source_root: Path,
    root: Path,
    plan: FilePlan,
    since_ms: int,
    until_ms: int,
    groups: tuple[int, ...],
    prefix: str = "edge",
    con: duckdb.DuckDBPyConnection | None = None,
) -> FileEntry | None:
    """The window's rows of the row groups `groups` as `<prefix>-<name>`, re-encoded; None when there are
    none. `con`: a DuckDB connection for this call alone (see _edge_chunks)."""
    if not groups:
        return None
    keys, counters = table_layout(plan.entry.table)
    relpath = _named(plan.entry, prefix)
    entry = write_atomic(
        root,
        relpath,
        _edge_chunks(source_root / plan.entry.path, plan, groups, since_ms, until_ms, con),
        table=plan.entry.table,
        level=plan.entry.level,
        schema=table_schema(plan.entry.table),
        keys=keys,
        counters=counters,
        thorough=False,  # written while the operator waits: the fixed rule at zstd 3
    )
    if entry.rows:
        return entry
    (root / relpath).unlink()
    return None


Job = Callable[[], list[FileEntry]]
"""A piece of a bundle's work: writes some of its files and returns them."""


def cut_jobs(
    source_root: Path,
    root: Path,
    plan: FilePlan,
    since_ms: int,
    until_ms: int,
    connect: Callable[[], duckdb.DuckDBPyConnection] | None = None,
) -> list[tuple[int, Job]]:
    """The bundle's files for one store file as independent (weight, job) pairs, so the pool runs them on
    both cores: its whole row groups copied, and each edge band's groups re-encoded apart (a 1 h window's
    two edge bands in a day file of serving histograms were one 2.8 s job).

    connect: makes a DuckDB connection (over the store) for one edge job to read its band with; called
    here, on the caller's thread, once per edge job (None: pyarrow reads the bands)."""

    def whole() -> list[FileEntry]:
        try:
            copied = copy_whole(source_root, root, plan)
        except SpliceRefused:
            copied = cut_edges(source_root, root, plan, since_ms, until_ms, plan.whole, prefix="cut")
        return [copied] if copied is not None else []

    def edge(groups: tuple[int, ...], prefix: str, con: duckdb.DuckDBPyConnection | None) -> list[FileEntry]:
        try:
            cut = cut_edges(source_root, root, plan, since_ms, until_ms, groups, prefix, con)
        finally:
            if con is not None:
                con.close()
        return [cut] if cut is not None else []

    band_ms = table_band_ms(plan.entry.table)
    bands: dict[int, list[int]] = {}
    for rg in plan.edge:
        bands.setdefault(plan.bounds[rg][0] // band_ms, []).append(rg)
    jobs: list[tuple[int, Job]] = [(sum(plan.bytes[i] for i in plan.whole), whole)] if plan.whole else []
    for n, groups in enumerate(bands.values()):
        prefix = "edge" if n == 0 else f"edge{n}"
        con = connect() if connect is not None else None
        job = functools.partial(edge, tuple(groups), prefix, con)
        jobs.append((8 * sum(plan.bytes[i] for i in groups), job))
    return jobs


class CutPool:
    """Runs cut_jobs' jobs (and whole-file copies) on WORKERS threads; results come back in submit order.

    Args:
        progress: called with each finished job's weight (bytes of work), from the caller's thread.
    """

    def __init__(self, progress: Callable[[int], None] | None = None) -> None:
        """Start the pool."""
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="export-cut")
        self._jobs: list[tuple[Future[list[FileEntry]], int]] = []
        self._progress = progress

    def submit(self, weight: int, job: Callable[[], list[FileEntry]]) -> None:
        """Queue a job whose result is the bundle files it wrote."""
        self._jobs.append((self._pool.submit(job), weight))

    def done(self, entries: list[FileEntry]) -> None:
        """Add files already written (in this thread), in their place in submit order."""
        finished: Future[list[FileEntry]] = Future()
        finished.set_result(entries)
        self._jobs.append((finished, 0))

    def cancel(self) -> None:
        """Drop the jobs not started and wait for the running ones (their files go with the build dir)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._jobs = []

    def results(self) -> list[FileEntry]:
        """Every job's files, in submit order; the first job's error is raised after all have ended."""
        out: list[FileEntry] = []
        try:
            for future, weight in self._jobs:
                out += future.result()
                if self._progress is not None:
                    self._progress(weight)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._jobs = []
        return out
