"""Store benchmarks: bytes per sample after compaction, ingest rate, and the two reference queries.

Run: .venv/bin/python bench/bench_store.py [--hours 24] [--nvlink-hours 1] [--dir DIR]

Data: synthetic 1 Hz GB300 NVL72 telemetry shaped like shared/reference/storage.md section 9 (a
30 s load sine with checkpoint dips every 10 min, a per-GPU random walk, noisy power, smoothed
temperatures, monotonic counters), built per hour as Arrow columns and fed to the real writer one
Frame per tick. A "sample" is one non-key value of one entity at one tick.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.frame import Frame
from storage.layout import read_manifest
from storage.reader import StoreReader
from storage.rollups import ROLLUP_TABLES
from storage.schemas import GPU, NVLINK, SORT_KEYS, TABLES
from storage.sql_text import ts_literal
from storage.writer import StoreWriter

GPUS = 72
LINKS = 18
START_MS = 1_735_691_400_000
"""2025-01-01 00:30 UTC: the window ends mid-hour, as a live store's does."""


def load_at(t: int) -> float:
    """The rack's training-like load at second t."""
    if t % 600 < 20:
        return 0.15
    return 0.85 + 0.1 * math.sin(2 * math.pi * t / 30)


class GpuGen:
    """Per-GPU state carried from hour to hour."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.walk = [0.0] * GPUS
        self.energy = [self.rng.randrange(10**9) for _ in range(GPUS)]
        self.tx = [0] * GPUS
        self.temp = [35.0] * GPUS
        self.nv_tx = [[0] * LINKS for _ in range(GPUS)]
        self.nv_rx = [[0] * LINKS for _ in range(GPUS)]

    def gpu_hour(self, t0: int) -> list[pa.RecordBatch]:
        """3,600 per-tick gpu batches starting at second t0 (relative to START_MS)."""
        rng, out = self.rng, []
        uuids = pa.array([f"GPU-{g:08x}-0000-0000-0000-{g:012x}" for g in range(GPUS)])
        gpu_ids = pa.array(range(GPUS), pa.int16())
        trays = pa.array([g // 4 + 1 for g in range(GPUS)], pa.int8())
        zeros8 = pa.array([0] * GPUS, pa.int8())
        for t in range(t0, t0 + 3600):
            base = load_at(t)
            cols: dict[str, list[int]] = {
                k: [] for k in ("util", "memu", "used", "pw", "en", "tg", "tm", "mg", "sm")
            }
            cols.update(ev=[], tx=[])
            for g in range(GPUS):
                self.walk[g] = max(-0.05, min(0.05, self.walk[g] + rng.gauss(0, 0.002)))
                load = max(0.0, min(1.0, base + self.walk[g]))
                power = round((150 + 550 * load + rng.gauss(0, 5)) * 1000)
                self.energy[g] += power
                self.temp[g] += (35 + 40 * load - self.temp[g]) / 60
                self.tx[g] += round(load * 900_000_000 * rng.uniform(0.9, 1.1) / 1024)
                tg = round(self.temp[g] + rng.gauss(0, 0.4))
                cols["util"].append(min(100, round(load * 100)))
                cols["memu"].append(min(100, round(load * 60)))
                cols["used"].append(201_000 if load > 0.5 else 180_000)
                cols["pw"].append(power)
                cols["en"].append(self.energy[g])
                cols["tg"].append(tg)
                cols["tm"].append(tg + 4)
                cols["mg"].append(87 - tg)
                cols["sm"].append(2070 if load < 0.95 else 2055)
                cols["ev"].append(4 if load > 0.95 else 0)
                cols["tx"].append(self.tx[g])
            ts = pa.array([START_MS + t * 1000] * GPUS, GPU.field("ts").type)
            arrays = {
                "ts": ts,
                "gpu": gpu_ids,
                "uuid": uuids,
                "tray": trays,
                "state": zeros8,
                "util_gpu_pct": pa.array(cols["util"], pa.int8()),
                "util_mem_pct": pa.array(cols["memu"], pa.int8()),
                "mem_used_mib": pa.array(cols["used"], pa.int32()),
                "mem_total_mib": pa.array([284_208] * GPUS, pa.int32()),
                "power_mw": pa.array(cols["pw"], pa.int32()),
                "power_limit_mw": pa.array([1_400_000] * GPUS, pa.int32()),
                "energy_mj": pa.array(cols["en"], pa.int64()),
                "temp_gpu_c": pa.array(cols["tg"], pa.int16()),
                "temp_mem_c": pa.array(cols["tm"], pa.int16()),
                "temp_margin_c": pa.array(cols["mg"], pa.int16()),
                "sm_clock_mhz": pa.array(cols["sm"], pa.int16()),
                "mem_clock_mhz": pa.array([3996] * GPUS, pa.int16()),
                "clocks_event_reasons": pa.array(cols["ev"], pa.int64()),
                "pstate": zeros8,
                "ecc_corrected": pa.array([0] * GPUS, pa.int64()),
                "ecc_uncorrected": pa.array([0] * GPUS, pa.int64()),
                "nvlink_tx_kib": pa.array(cols["tx"], pa.int64()),
                "nvlink_rx_kib": pa.array([x // 2 for x in cols["tx"]], pa.int64()),
                "nvlink_up": pa.array([18] * GPUS, pa.int8()),
            }
            out.append(pa.RecordBatch.from_arrays([arrays[f.name] for f in GPU], schema=GPU))
        return out

    def nvlink_tick(self, t: int) -> pa.RecordBatch:
        """One tick of 1,296 nvlink rows."""
        rng, base = self.rng, load_at(t)
        tx, rx = [], []
        for g in range(GPUS):
            for k in range(LINKS):
                self.nv_tx[g][k] += round(base * 50_000 * rng.uniform(0.9, 1.1))
                self.nv_rx[g][k] += round(base * 50_000 * rng.uniform(0.9, 1.1))
                tx.append(self.nv_tx[g][k])
                rx.append(self.nv_rx[g][k])
        n = GPUS * LINKS
        zeros = pa.array([0] * n, pa.int64())
        arrays = [
            pa.array([START_MS + t * 1000] * n, NVLINK.field("ts").type),
            pa.array([g for g in range(GPUS) for _ in range(LINKS)], pa.int16()),
            pa.array([k for _ in range(GPUS) for k in range(LINKS)], pa.int8()),
            pa.array([1] * n, pa.int8()),
            pa.array(tx, pa.int64()),
            pa.array(rx, pa.int64()),
            zeros,
            zeros,
            zeros,
            zeros,
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=NVLINK)


def samples_per_row(table: str) -> int:
    """Non-key columns of a table: what one row contributes in samples."""
    schema = TABLES[table] if table in TABLES else ROLLUP_TABLES[table]
    keys = {"ts", *SORT_KEYS.get(table, ())}
    if table in ROLLUP_TABLES:
        keys |= {"gpu", "link", "host", "endpoint", "engine", "metric", "le"}
    return len([f for f in schema if f.name not in keys])


def timed(fn, repeat: int = 7) -> float:
    """Median wall ms of fn() over `repeat` runs after one warm-up."""
    fn()
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - began) * 1000)
    return sorted(runs)[len(runs) // 2]


def frames_of(batches: list[pa.RecordBatch], table: str) -> Iterator[Frame]:
    for b in batches:
        yield Frame(b.column(0)[0].value, {table: b})


def main() -> None:
    """Build the store, print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--nvlink-hours", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-store-"))
    gen = GpuGen(42)

    # Ingest: frames -> sealed 10 s segments, one core, compaction off.
    hour = gen.gpu_hour(0)
    nvl = [gen.nvlink_tick(t) for t in range(600)]
    frames = [
        Frame(b.column(0)[0].value, {"gpu": b, "nvlink": n}) for b, n in zip(hour[:600], nvl, strict=True)
    ]
    per_frame = GPUS * samples_per_row("gpu") + GPUS * LINKS * samples_per_row("nvlink")
    ingest_dir = work / "ingest"
    with StoreWriter(ingest_dir, flush_interval_s=10, compaction="off") as writer:
        cpu0, began = time.process_time(), time.perf_counter()
        for f in frames:
            writer.store(f)
        writer.flush()
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu0
    total = per_frame * len(frames)
    print(f"ingest: {len(frames)} frames (gpu + nvlink, {per_frame} samples each) -> 10 s segments")
    print(f"  {total / wall / 1e6:.2f} M samples/s wall, {total / cpu / 1e6:.2f} M samples/s per CPU-second")
    shutil.rmtree(ingest_dir)

    # 24 h of gpu at 1 Hz through the real writer, compacted inline.
    store = work / "store"
    began = time.perf_counter()
    writer = StoreWriter(store, flush_interval_s=600, compaction="inline", grace_s=0)
    for h in range(args.hours):
        for f in frames_of(hour if h == 0 else gen.gpu_hour(h * 3600), "gpu"):
            writer.store(f)
    gen2 = GpuGen(7)
    writer.close()
    nv_store = work / "nvlink"
    with StoreWriter(nv_store, flush_interval_s=600, compaction="inline", grace_s=0) as nvw:
        for t in range(args.nvlink_hours * 3600 + 1):
            nvw.store(Frame(START_MS + t * 1000, {"nvlink": gen2.nvlink_tick(t)}))
    took = time.perf_counter() - began
    print(f"\nbuilt {args.hours} h of gpu and {args.nvlink_hours} h of nvlink in {took:.0f} s")

    print("\nbytes per stored sample after compaction (file bytes / (rows x non-key columns)):")
    for root in (store, nv_store):
        manifest = read_manifest(root)
        tables = sorted({f.table for f in manifest.files})
        for table in tables:
            files = manifest.of(table)
            rows = sum(f.rows for f in files)
            size = sum(f.bytes for f in files)
            levels = ",".join(sorted({f.level for f in files}))
            bps = size / (rows * samples_per_row(table))
            print(f"  {table:8s} {rows:>11,} rows  {size / 1e6:8.2f} MB  {bps:.3f} B/sample  ({levels})")

    reader = StoreReader(store, threads=2)
    end = reader.manifest.sealed_through_ms
    assert end is not None
    last5 = f"SELECT * FROM gpu WHERE ts > {ts_literal(end - 300_000)}"
    rel = reader.relation("gpu", end - 300_000 + 1, None)
    n = reader.sql(f"SELECT count(*) AS n FROM ({last5})").to_pylist()[0]["n"]
    print(f"\nqueries (median of 7, DuckDB 2 threads), {len(reader.manifest.files)} live files:")
    print(f"  last 5 minutes of every GPU ({n} rows, view):     {timed(lambda: reader.sql(last5)):7.1f} ms")
    by_rel = f"SELECT * FROM {rel}"
    print(f"  last 5 minutes of every GPU (relation()):       {timed(lambda: reader.sql(by_rel)):7.1f} ms")
    q_roll = "SELECT gpu, ts, util_gpu_pct_mean FROM gpu_1m ORDER BY gpu, ts"
    q_raw = (
        "SELECT gpu, time_bucket(INTERVAL 1 MINUTE, ts) AS m, avg(util_gpu_pct) AS u FROM gpu GROUP BY ALL"
    )
    n_roll = reader.sql(f"SELECT count(*) AS n FROM ({q_roll})").to_pylist()[0]["n"]
    ms_roll = timed(lambda: reader.sql(q_roll))
    print(f"  1-min mean util, every GPU, whole store (gpu_1m, {n_roll} rows): {ms_roll:7.1f} ms")
    ms_raw = timed(lambda: reader.sql(q_raw), 3)
    print(f"  1-min mean util, every GPU, whole store (raw gpu): {ms_raw:7.1f} ms")
    reader.close()
    if args.dir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
