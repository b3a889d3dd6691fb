"""Store benchmark on simulated rack history: size per sample, query latency and backfill throughput.

Run: .venv/bin/python bench/bench_store_sim.py [--hours 24] [--scenario steady] [--seed 0] [--dir DIR]

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
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.backfill import backfill
from storage.layout import read_manifest
from storage.reader import StoreReader, ts_literal
from storage.rollups import ROLLUP_TABLES
from storage.schemas import SORT_KEYS, TABLES

END_S = 1_735_777_800.0
"""2025-01-02 00:30 UTC: 24 h ends mid-hour, after one complete UTC day."""
SIZE_TABLES = ("gpu", "nvlink", "serving", "serving_hist", "events", "processes")


def samples_per_row(table: str) -> int:
    """Non-key columns of a table: what one row contributes in samples."""
    schema = TABLES[table] if table in TABLES else ROLLUP_TABLES[table]
    keys = {"ts", *SORT_KEYS.get(table, ())}
    return len([f for f in schema if f.name not in keys])


def timed(fn: Callable[[], object], repeat: int = 7) -> float:
    """Median wall ms of fn() over `repeat` runs after one warm-up."""
    fn()
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - began) * 1000)
    return sorted(runs)[len(runs) // 2]


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


def main() -> None:
    """Backfill, then print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--scenario", default="steady")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="keep the store here (default: a temp dir)")
    args = parser.parse_args()
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
        print(
            f"  {table:12s} {rows:>13,} rows x {per:2d}  {size / 1e6:9.2f} MB  "
            f"{size / (rows * per):.3f} B/sample  {size / rows:7.2f} B/row  ({levels})"
        )

    gpu_files = manifest.of("gpu")
    gpu_rows = sum(f.rows for f in gpu_files)
    by_column = column_bytes([store / f.path for f in gpu_files])
    total = sum(by_column.values())
    print(f"\ngpu columns by compressed size ({total / gpu_rows:.2f} B/row, footers and indexes excluded):")
    for name, size in sorted(by_column.items(), key=lambda kv: -kv[1]):
        print(f"  {name:22s} {size / 1e6:8.3f} MB  {size / gpu_rows:6.3f} B/row  {100 * size / total:5.1f} %")

    reader = StoreReader(store, threads=2)
    end = reader.manifest.sealed_through_ms
    assert end is not None
    last5 = f"SELECT * FROM {reader.relation('gpu', end - 300_000 + 1, None)}"
    n5 = reader.sql(f"SELECT count(*) AS n FROM ({last5})").to_pylist()[0]["n"]
    q_roll = "SELECT gpu, ts, util_gpu_pct_mean FROM gpu_1m ORDER BY gpu, ts"
    q_raw = (
        "SELECT gpu, time_bucket(INTERVAL 1 MINUTE, ts) AS m, avg(util_gpu_pct) AS u FROM gpu GROUP BY ALL"
    )
    n_roll = reader.sql(f"SELECT count(*) AS n FROM ({q_roll})").to_pylist()[0]["n"]
    view5 = f"SELECT * FROM gpu WHERE ts > {ts_literal(end - 300_000)}"
    print(f"\nqueries (median of 7, DuckDB 2 threads), {len(reader.manifest.files)} live files:")
    print(
        f"  last 5 minutes of every GPU ({n5} rows, relation()):  {timed(lambda: reader.sql(last5)):7.1f} ms"
    )
    print(
        f"  last 5 minutes of every GPU (whole-table view):       {timed(lambda: reader.sql(view5)):7.1f} ms"
    )
    ms_roll = timed(lambda: reader.sql(q_roll))
    print(f"  1-min mean util, every GPU, {args.hours:g} h (gpu_1m, {n_roll} rows): {ms_roll:7.1f} ms")
    ms_raw = timed(lambda: reader.sql(q_raw), 3)
    print(f"  1-min mean util, every GPU, {args.hours:g} h (raw gpu, median of 3): {ms_raw:7.1f} ms")
    reader.close()
    if args.dir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
