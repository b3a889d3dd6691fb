"""`monitor export`: cut a window out of a store into a self-describing bundle that is itself a store.

A bundle is a valid store directory (MANIFEST.json over Hive-style Parquet, written by the same
layout and segment code as the collector's), so StoreReader, `monitor query`, `monitor report` and
DuckDB read it directly. Beside the store it holds EXPORT.json (rack topology, window, units, tool
version, sources, tables), optional CSV or JSON Lines copies of each table and report.html.

Speed: a store file wholly inside the window is copied as is; a file at an edge keeps its row groups
inside the window as bytes and re-encodes only the ones that straddle the edge (monitor.export_cut), on
two threads. The raw histograms (serving_hist) are exported whole, never at a coarser resolution: a
post-mortem's percentiles over any sub-window need every bucket's counter at every tick.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from collectors.rack import GPUS, GPUS_PER_TRAY, gpu_index
from monitor.bundle import (
    EXPORT_MANIFEST,
    REPORT_HTML,
    check_replaceable,
    describe,
)
from monitor.export_cut import CutPool, cut_jobs, plan_file
from monitor.progress import Progress
from monitor.timespec import Window, iso
from storage.atomic import build_dir, write_bytes
from storage.bands import table_band_ms, table_layout, table_schema
from storage.layout import FileEntry, Manifest, write_manifest
from storage.reader import StoreReader
from storage.rollups import ROLLED_UP, ROLLUP_STEPS, rollup_name
from storage.row_order import banded_chunks
from storage.sandbox import LockedConnection
from storage.schemas import TABLES, conform
from storage.segments import write_atomic
from storage.sql_text import identifier, string_literal, ts_literal

FORMATS = ("parquet", "csv", "json")
CHUNK_ROWS = 2_000_000
"""Rows sorted in memory at once; a day of NVLink rows is written in GPU groups of about this size."""
FORMULA_START = "=+-@\t\r"
"""A CSV cell starting with one of these is read as a formula by spreadsheets (CWE-1236)."""


class EmptyWindowError(Exception):
    """The window holds no rows of the tables asked for; the message says what the store holds."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        out: the bundle directory.
        rows: rows per table written.
        files: files in the bundle.
        bytes: their total size.
        seconds: wall time.
    """

    out: Path
    rows: dict[str, int]
    files: int
    bytes: int
    seconds: float


def parse_gpus(text: str) -> tuple[int, ...]:
    """GPUs from '0,1,8-11,T03.G2,T05' (indices, ranges, labels, whole trays); ValueError if unknown."""
    from collectors.config import parse_gpu

    picked: set[int] = set()
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        tray = re.fullmatch(r"[Tt](\d{1,2})", raw)
        span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", raw)
        try:
            if tray:
                picked.update(gpu_index(int(tray.group(1)), m) for m in range(1, GPUS_PER_TRAY + 1))
            elif span:
                lo, hi = int(span.group(1)), int(span.group(2))
                if lo > hi:
                    raise ValueError(f"range {raw!r} runs backwards")
                picked.update(parse_gpu(g) for g in range(lo, hi + 1))
            else:
                picked.add(parse_gpu(int(raw) if raw.isdigit() else raw.upper()))
        except ValueError as err:
            raise ValueError(
                f"unknown GPU {raw!r} in --gpus ({err}); use 0..{GPUS - 1}, T03.G2 or T03"
            ) from None
    if not picked:
        raise ValueError("--gpus names no GPU")
    return tuple(sorted(picked))


def parse_tables(text: str) -> tuple[str, ...]:
    """Raw table names from 'gpu,events'; ValueError naming the known ones otherwise."""
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in names if t not in TABLES]
    if unknown or not names:
        raise ValueError(
            f"unknown table {', '.join(unknown) or repr(text)} in --tables; use {', '.join(TABLES)}"
        )
    return names


class _Cutter:
    """The SQL that selects one table's rows of the window (and of the chosen GPUs) from a store."""

    def __init__(self, reader: StoreReader, window: Window, gpus: Sequence[int] | None) -> None:
        self.reader, self.window, self.gpus = reader, window, gpus
        self._endpoints: dict[tuple[int, int], list[str]] = {}

    def where(self, table: str, since_ms: int, until_ms: int) -> str:
        """The filter on GPUs for `table` ('TRUE' without --gpus)."""
        if self.gpus is None:
            return "TRUE"
        listed = ", ".join(map(str, self.gpus))
        if table in ("gpu", "nvlink", "processes") or table.startswith(("gpu_", "nvlink_")):
            return f"gpu IN ({listed})"
        if table == "events":
            return f"(gpu IS NULL OR gpu IN ({listed}))"
        # Endpoints of unknown placement are kept: dropping them could hide the server at fault.
        on_gpus = (
            f"(gpus IS NULL OR list_has_any(list_transform(string_split(gpus, ','), "
            f"lambda x: TRY_CAST(trim(x) AS INTEGER)), [{listed}]))"
        )
        if table == "serving":
            return on_gpus
        if table.startswith("serving"):
            return self._endpoints_in(on_gpus, since_ms, until_ms)
        return "TRUE"

    def _endpoints_in(self, on_gpus: str, since_ms: int, until_ms: int) -> str:
        """`endpoint IN ('a', ...)` for the endpoints on the chosen GPUs, listed as literals: a filter
        that keeps the file's row order (a semi-join does not, and its cut then needs a sort) and that
        DuckDB checks against row-group statistics."""
        key = (since_ms, until_ms)
        if key not in self._endpoints:
            serving = self.reader.relation("serving", since_ms, until_ms)
            rows = self.reader.sql(
                f"SELECT DISTINCT endpoint FROM {serving} WHERE {on_gpus} ORDER BY endpoint"
            )
            self._endpoints[key] = [string_literal(e) for e in rows.column("endpoint").to_pylist()]
        listed = self._endpoints[key]
        return f"endpoint IN ({', '.join(listed)})" if listed else "FALSE"

    def cut(self, entry: FileEntry, since_ms: int, until_ms: int) -> Iterator[pa.Table]:
        """One store file's rows in the window (and on the chosen GPUs), in chunks of whole GPU groups.

        The caller re-bands each chunk (storage.row_order.banded_chunks), so the cut file has the
        store's layout: row groups of one time band each, sorted by (keys, ts) inside. GPU-keyed
        files are read in ascending GPU groups of about CHUNK_ROWS rows, so an hour of NVLink rows is
        never held in memory at once; each group's filter lets DuckDB skip row groups by statistics.
        """
        keys = table_layout(entry.table)[0]
        path = string_literal(self.reader.root / entry.path)
        within = f"ts >= {ts_literal(since_ms)} AND ts <= {ts_literal(until_ms)}"
        base = (
            f"SELECT * FROM read_parquet({path}, hive_partitioning = false) "
            f"WHERE {within} AND {self.where(entry.table, since_ms, until_ms)}"
        )
        # DuckDB hands timestamps back in microseconds; the store's files (and FileEntry bounds) are ms.
        schema = table_schema(entry.table)
        gpus = list(self.gpus) if self.gpus is not None else list(range(GPUS))
        # Groups of about CHUNK_ROWS rows of the chosen GPUs: a day file cut to one tray is read in
        # one pass, not one per group of the whole rack's rows.
        groups = math.ceil(entry.rows * len(gpus) / GPUS / CHUNK_ROWS)
        if groups <= 1 or not keys or keys[0] != "gpu":
            yield conform(self.reader.sql(base), schema)
            return
        size = math.ceil(len(gpus) / groups)
        for i in range(0, len(gpus), size):
            part = ", ".join(map(str, gpus[i : i + size]))
            yield conform(self.reader.sql(f"{base} AND gpu IN ({part})"), schema)


def _plan_table(root: Path, cutter: _Cutter, pool: CutPool, table: str, since_ms: int, until_ms: int) -> int:
    """Queue the bundle's files of one table on `pool`; returns the work queued (bytes, for progress).

    A store file wholly inside the window (with every GPU) is copied byte for byte. Without --gpus a
    file at the window's edge keeps its row groups inside the window as bytes and re-encodes only the
    ones that straddle an edge (monitor.export_cut); with --gpus every file is cut row by row.
    """
    source = cutter.reader.root
    queued = 0
    for entry in cutter.reader.manifest.overlapping(table, since_ms, until_ms):
        inside = since_ms <= entry.min_ts and entry.max_ts <= until_ms
        if inside and cutter.gpus is None:
            pool.submit(entry.bytes, functools.partial(_copy_file, source, root, entry))
            queued += entry.bytes
        elif cutter.gpus is None:
            plan = plan_file(source, entry, since_ms, until_ms)
            # Each edge job reads its band through its own cursor of the reader's (locked) DuckDB.
            connect = cutter.reader.con.cursor
            for weight, job in cut_jobs(source, root, plan, since_ms, until_ms, connect):
                pool.submit(weight, job)
            queued += plan.work
        else:
            # The GPU filter runs SQL on the reader's one connection: cut here, not on the pool.
            pool.done(_cut_rows(root, cutter, entry, since_ms, until_ms))
    return queued


def _copy_file(source: Path, root: Path, entry: FileEntry) -> list[FileEntry]:
    target = root / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / entry.path, target)
    return [entry]


def _cut_rows(root: Path, cutter: _Cutter, entry: FileEntry, since_ms: int, until_ms: int) -> list[FileEntry]:
    """One store file's rows of the window on the chosen GPUs, re-banded into `cut-<name>`."""
    keys, counters = table_layout(entry.table)
    cut = write_atomic(
        root,
        str(Path(entry.path).with_name(f"cut-{Path(entry.path).name}")),
        (
            band
            for chunk in cutter.cut(entry, since_ms, until_ms)
            for band in banded_chunks(chunk, keys, table_band_ms(entry.table))
        ),
        table=entry.table,
        level=entry.level,
        schema=table_schema(entry.table),
        keys=keys,
        counters=counters,
        thorough=False,  # written while the operator waits: the fixed rule at zstd 3
    )
    if cut.rows:
        return [cut]
    (root / cut.path).unlink()
    return []


def _text_copy(root: Path, table: str, entries: Sequence[FileEntry], fmt: str) -> str:
    """Write <table>.csv or <table>.jsonl from the bundle's own Parquet files; returns the file name."""
    name = f"{table}.csv" if fmt == "csv" else f"{table}.jsonl"
    schema = TABLES[table]
    cols = []
    for f in schema:
        ident = identifier(f.name)
        if fmt == "csv" and pa.types.is_string(f.type):
            starts = "".join("\\" + c if c in "-\\]^" else c for c in FORMULA_START)
            test = f"regexp_matches({ident}, '^[{starts}]')"
            cols.append(f"CASE WHEN {test} THEN '''' || {ident} ELSE {ident} END AS {ident}")
        else:
            cols.append(ident)
    files = ", ".join(string_literal(root / e.path) for e in entries)
    target = string_literal(root / name)
    options = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT json"
    # DuckDB's CSV and JSON writers stream (pyarrow has no JSON writer), so DuckDB writes the copy,
    # on a connection of its own that can open nothing but this bundle: the private directory it is
    # being built in, published whole by build_dir. StoreReader's connection never writes.
    locked = LockedConnection([root])
    con = locked.con
    try:
        if entries:
            source = f"read_parquet([{files}], hive_partitioning = false)"
            con.execute(f"COPY (SELECT {', '.join(cols)} FROM {source}) TO {target} ({options})")
        else:
            con.register("empty_rows", pa.table({f.name: pa.array([], f.type) for f in schema}))
            con.execute(f"COPY (SELECT {', '.join(cols)} FROM empty_rows) TO {target} ({options})")
    finally:
        locked.close()
    return name


def _sources(reader: StoreReader, window: Window) -> list[str]:
    """Who reported the window's rows: event sources, serving endpoints and collecting hosts."""
    parts = [
        f"SELECT source AS s FROM {reader.relation('events', window.since_ms, window.until_ms)}",
        f"SELECT endpoint AS s FROM {reader.relation('serving', window.since_ms, window.until_ms)}",
        f"SELECT host AS s FROM {reader.relation('host', window.since_ms, window.until_ms)}",
    ]
    rows = reader.sql(f"SELECT DISTINCT s FROM ({' UNION ALL '.join(parts)}) WHERE s IS NOT NULL ORDER BY s")
    return [str(v) for v in rows.column("s").to_pylist()]


def _queue_window(
    root: Path, cutter: _Cutter, chosen: Sequence[str], window: Window, progress: Progress
) -> CutPool:
    """Queue every file of the bundle's tables and their rollups on a CutPool (its results() are the
    bundle's files in manifest order).

    Rollup buckets are taken only where wholly inside the window: a partial one would summarise rows
    not exported.
    """
    since, until = window.since_ms, window.until_ms
    pool = CutPool(progress.advance)
    try:
        for table in chosen:
            progress.add_total(_plan_table(root, cutter, pool, table, since, until))
        for table in (t for t in chosen if t in ROLLED_UP):
            for step, step_ms in ROLLUP_STEPS.items():
                if until - step_ms + 1 >= since:
                    name = rollup_name(table, step)
                    progress.add_total(_plan_table(root, cutter, pool, name, since, until - step_ms + 1))
        progress.step("copying and cutting files")
    except BaseException:
        pool.cancel()
        raise
    return pool


def _report_html(reader: StoreReader, window: Window, title: str) -> bytes:
    from monitor.report_html import render_report  # the charts' code loads only when a report is made

    return render_report(reader, Window(window.since_ms, window.until_ms), title=title).encode()


def export(
    store: Path,
    out: Path,
    window: Window,
    *,
    gpus: Sequence[int] | None = None,
    tables: Sequence[str] | None = None,
    fmt: str = "parquet",
    force: bool = False,
    with_report: bool = True,
) -> ExportResult:
    """Cut `window` of the store at `store` into a bundle at `out`.

    Args:
        store: the store directory (read only; a writer may be running).
        out: the bundle directory to create; refused if it exists (unless `force`) or is a symlink.
        window: the time window.
        gpus: rack GPU indices to keep (None: all).
        tables: raw tables to export (None: all); their 1m/1h rollups come along.
        fmt: parquet, or csv/json for a text copy of each table beside the Parquet.
        force: replace an existing `out`.
        with_report: write report.html.

    Raises:
        StoreError: `store` is not a readable store.
        EmptyWindowError: nothing in the window.
        OutputError: `out` is refused.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    began = time.perf_counter()
    chosen = tuple(tables) if tables else tuple(TABLES)
    written: dict[str, int] = {}
    with StoreReader(store) as reader, Progress("export") as progress:
        cutter = _Cutter(reader, window, gpus)

        def fill(root: Path) -> None:
            pool = _queue_window(root, cutter, chosen, window, progress)
            html = None
            try:
                if with_report and gpus is None and tables is None:
                    # The bundle will hold every row of the store in the window, so report.html is the
                    # same read from the store: made here while the pool cuts, on the other core.
                    progress.step("report.html, copying and cutting files")
                    html = _report_html(reader, window, store.name)
            finally:
                entries = pool.results()
            for table in chosen:
                written[table] = sum(e.rows for e in entries if e.table == table)
            if not any(written.values()):
                held = reader.time_range("gpu")
                holds = f"it holds {iso(held[0])} .. {iso(held[1])}" if held else "it holds no GPU rows"
                raise EmptyWindowError(
                    f"no data between {iso(window.since_ms)} and {iso(window.until_ms)} in {store} ({holds})"
                )
            hi = max(e.max_ts for e in entries)
            write_manifest(root, Manifest(generation=1, sealed_through_ms=hi, files=entries))
            text_files = {}
            if fmt != "parquet":
                progress.step(f"{fmt} copies")
                for table in chosen:
                    text_files[table] = _text_copy(root, table, [e for e in entries if e.table == table], fmt)
            doc = describe(store, window, gpus, written, entries, text_files, fmt, _sources(reader, window))
            if with_report and html is None:
                # A part of the store's rows (--gpus, --tables): the report is of the bundle's.
                progress.step("report.html")
                with StoreReader(root) as bundle:
                    html = _report_html(bundle, window, store.name)
            if html is not None:
                write_bytes(root / REPORT_HTML, html)
            # Last, listing every file: `--force` later replaces only a directory holding no other.
            doc["files"] = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            write_bytes(root / EXPORT_MANIFEST, json.dumps(doc, indent=1).encode() + b"\n")
            progress.step("publishing")

        build_dir(out, force=force, fill=fill, like=store, replaceable=check_replaceable)
    files = [p for p in out.rglob("*") if p.is_file()]
    return ExportResult(
        out, written, len(files), sum(p.stat().st_size for p in files), time.perf_counter() - began
    )
