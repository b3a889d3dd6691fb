"""Store benchmark on simulated rack history: size per sample, query latency and backfill throughput.

Run: .venv/bin/python bench/bench_store_sim.py [--hours 24] [--scenario steady] [--seed 0] [--dir DIR]
     .venv/bin/python bench/bench_store_sim.py --store DIR [--relayout-into COPY] [--repeat 9]

Data: `hours` of 1 Hz history of the simulated GB300 NVL72 (collectors.sim), written by the real
backfill (monitor.backfill, fast frame path: gpu, nvlink, events, processes, serving, serving_hist)
through the real StoreWriter with inline compaction, ending at 00:30 UTC so that every complete
hour is an hour file, the complete day a day file, and the last half hour is still segments, as in a
live store. Unlike bench_store.py's synthetic data, the values are the simulator's physics.

A "sample" is one non-key value of one row: every column except ts and the table's sort keys
(storage.schemas.SORT_KEYS). For gpu that is 22 columns (uuid, tray and state included); the
per-column table below shows what each costs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.backfill import backfill
from storage.layout import read_manifest
from storage.reader import StoreReader
from storage.rollups import ROLLUP_TABLES
from storage.schemas import SORT_KEYS, TABLES
from storage.sql_text import ts_literal
from storage.writer import StoreWriter

END_S = 1_735_777_800.0
"""2025-01-02 00:30 UTC: 24 h ends mid-hour, after one complete UTC day."""
SIZE_TABLES = ("gpu", "nvlink", "serving", "serving_hist", "events", "processes")


def samples_per_row(table: str) -> int:
    """Non-key columns of a table: what one row contributes in samples."""
    schema = TABLES[table] if table in TABLES else ROLLUP_TABLES[table]
    keys = {"ts", *SORT_KEYS.get(table, ())}
    return len([f for f in schema if f.name not in keys])


def column_bytes(paths: list[Path]) -> dict[str, int]:
    """Compressed bytes per column over files, from their Parquet footers."""
    out: dict[str, int] = {}
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        for rg in range(meta.num_row_groups):
            group = meta.row_group(rg)
            for c in range(group.num_columns):
                chunk = group.column(c)
                out[chunk.path_in_schema] = out.get(chunk.path_in_schema, 0) + chunk.total_compressed_size
    return out


def size_report(store: Path) -> None:
    """Print bytes per stored sample per table and the gpu table's bytes per column."""
    manifest = read_manifest(store)
    print("\nbytes per stored sample after compaction (file bytes / (rows x non-key columns)):")
    for table in SIZE_TABLES:
        files = manifest.of(table)
        rows = sum(f.rows for f in files)
        size = sum(f.bytes for f in files)
        if not rows:
            print(f"  {table:12s} no rows")
            continue
        levels = ",".join(sorted({f.level for f in files}))
        per = samples_per_row(table)
        compacted = [f for f in files if f.level in ("hour", "day")]
        c_rows = sum(f.rows for f in compacted)
        c_size = sum(f.bytes for f in compacted)
        only = f"  hour+day files {c_size / (c_rows * per):.3f} B/sample" if c_rows else ""
        print(
            f"  {table:12s} {rows:>13,} rows x {per:2d}  {size / 1e6:9.2f} MB  "
            f"{size / (rows * per):.3f} B/sample  {size / rows:7.2f} B/row  ({levels}){only}"
        )

    gpu_files = manifest.of("gpu")
    gpu_rows = sum(f.rows for f in gpu_files)
    by_column = column_bytes([store / f.path for f in gpu_files])
    total = sum(by_column.values())
    print(f"\ngpu columns by compressed size ({total / gpu_rows:.2f} B/row, footers and indexes excluded):")
    for name, size in sorted(by_column.items(), key=lambda kv: -kv[1]):
        print(f"  {name:22s} {size / 1e6:8.3f} MB  {size / gpu_rows:6.3f} B/row  {100 * size / total:5.1f} %")


def timed_windows(reader: StoreReader, query: Callable[[int], str], starts: list[int]) -> tuple[float, float]:
    """(median wall ms, median CPU ms of this process) of query(start) over the window starts."""
    reader.sql(query(starts[0]))
    walls, cpus = [], []
    for start in starts:
        cpu = time.process_time()
        began = time.perf_counter()
        reader.sql(query(start))
        walls.append((time.perf_counter() - began) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def query_report(store: Path, repeat: int) -> None:
    """Print the latency of the queries a TUI, replay or export issues, on a store's compacted hours.

    Window queries are timed at `repeat` window starts drawn (seed 1) from the compacted hours, so a
    layout is not judged on one lucky window; medians of wall and CPU time are printed.
    """
    reader = StoreReader(store, threads=2)
    end = reader.manifest.sealed_through_ms
    assert end is not None
    compacted = [f for f in reader.manifest.of("gpu") if f.level in ("hour", "day")]
    lo = min((f.min_ts for f in compacted), default=reader.time_range()[0])  # type: ignore[index]
    hi = max((f.max_ts for f in compacted), default=end)
    rng = random.Random(1)

    def starts(span_ms: int) -> list[int]:
        return [rng.randrange(lo, max(lo + 1, hi - span_ms)) // 1000 * 1000 for _ in range(repeat)]

    def rel(table: str, span_ms: int) -> Callable[[int], str]:
        return lambda t: f"SELECT * FROM {reader.relation(table, t, t + span_ms - 1)}"

    def minute_means(span_ms: int) -> Callable[[int], str]:
        return lambda t: (
            "SELECT gpu, time_bucket(INTERVAL 1 MINUTE, ts) AS m, avg(util_gpu_pct) AS u "
            f"FROM {reader.relation('gpu', t, t + span_ms - 1)} GROUP BY ALL"
        )

    q_roll = "SELECT gpu, ts, util_gpu_pct_mean FROM gpu_1m ORDER BY gpu, ts"
    q_raw = (
        "SELECT gpu, time_bucket(INTERVAL 1 MINUTE, ts) AS m, avg(util_gpu_pct) AS u FROM gpu GROUP BY ALL"
    )
    last5 = f"SELECT * FROM {reader.relation('gpu', end - 300_000 + 1, None)}"
    view5 = f"SELECT * FROM gpu WHERE ts > {ts_literal(end - 300_000)}"
    rows: list[tuple[str, tuple[float, float]]] = [
        (
            "last 5 min of every GPU, relation() (open hour)",
            timed_windows(reader, lambda _: last5, [0] * repeat),
        ),
        ("last 5 min of every GPU, whole-table view", timed_windows(reader, lambda _: view5, [0] * repeat)),
        (
            "5 min of every GPU in a compacted hour",
            timed_windows(reader, rel("gpu", 300_000), starts(300_000)),
        ),
        (
            "2 min of every NVLink link, compacted hour",
            timed_windows(reader, rel("nvlink", 121_000), starts(121_000)),
        ),
        (
            "2 min of serving_hist, compacted hour",
            timed_windows(reader, rel("serving_hist", 121_000), starts(121_000)),
        ),
        (
            "1-min mean util, every GPU, 10 min window",
            timed_windows(reader, minute_means(600_000), starts(600_000)),
        ),
        (
            "1-min mean util, every GPU, 2 min window",
            timed_windows(reader, minute_means(121_000), starts(121_000)),
        ),
        ("1-min mean util, every GPU, whole store (raw)", timed_windows(reader, lambda _: q_raw, [0] * 3)),
        (
            "1-min mean util, every GPU, whole store (gpu_1m)",
            timed_windows(reader, lambda _: q_roll, [0] * repeat),
        ),
    ]
    print(
        f"\nqueries (DuckDB 2 threads, {len(reader.manifest.files)} live files; medians over {repeat} "
        f"windows; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):"
    )
    for name, (wall, cpu) in rows:
        print(f"  {name:<50} wall {wall:7.1f} ms  CPU {cpu:7.1f} ms")
    reader.close()


def relayout_copy(source: Path, target: Path) -> None:
    """Copy a store and rewrite its compacted files in the current layout (same rows, new layout)."""
    shutil.copytree(source, target)
    (target / "LOCK").unlink(missing_ok=True)
    with StoreWriter(target, compaction="off", grace_s=0.0) as writer:
        began = time.perf_counter()
        rewritten = writer.compactor.relayout()
        writer.compactor.run_once()  # purges the superseded files
    print(
        f"rewrote {rewritten} compacted files of {target} in the current layout "
        f"({time.perf_counter() - began:.1f} s)"
    )


def main() -> None:
    """Backfill (or open) a store, then print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--scenario", default="steady")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="keep the store here (default: a temp dir)")
    parser.add_argument("--store", type=Path, default=None, help="measure this existing store (no backfill)")
    parser.add_argument(
        "--relayout-into",
        type=Path,
        default=None,
        help="with --store: copy it here, rewrite its compacted files in the current layout, measure that",
    )
    parser.add_argument("--repeat", type=int, default=9, help="timed runs (window starts) per query")
    args = parser.parse_args()
    if args.store is not None:
        store = args.store
        if args.relayout_into is not None:
            relayout_copy(store, args.relayout_into)
            store = args.relayout_into
        size_report(store)
        query_report(store, args.repeat)
        return
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-store-sim-"))
    store = work / "store"

    def progress(done: int, total: int) -> None:
        print(
            f"  {done / 3600:.0f} h of {total / 3600:.0f} h, {time.perf_counter() - began:.0f} s", flush=True
        )

    print(f"backfill: {args.hours:g} h of the simulated rack ({args.scenario}, seed {args.seed}), fast path")
    began = time.perf_counter()
    cpu0 = time.process_time()
    result = backfill(
        store, args.hours * 3600, scenario=args.scenario, seed=args.seed, end_s=END_S, on_progress=progress
    )
    cpu = time.process_time() - cpu0
    manifest = read_manifest(store)
    samples = sum(sum(f.rows for f in manifest.of(t)) * samples_per_row(t) for t in SIZE_TABLES)
    print(
        f"  {result.ticks:,} ticks, {result.rows:,} rows in {result.seconds:.0f} s wall ({cpu:.0f} s CPU): "
        f"{result.ticks / result.seconds:,.0f} ticks/s, {result.rows / result.seconds / 1e6:.2f} M rows/s, "
        f"{samples / result.seconds / 1e6:.1f} M samples/s (frames + seal + compaction)"
    )
    hours = result.ticks / 3600
    print(
        f"  per simulated hour: {result.seconds / hours:.1f} s wall, {cpu / hours:.1f} s CPU "
        f"(a day: {24 * result.seconds / hours / 60:.1f} min wall, {24 * cpu / hours / 60:.1f} min CPU; "
        "wall depends on what else the cores run)"
    )
    size_report(store)
    query_report(store, args.repeat)
    if args.dir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
