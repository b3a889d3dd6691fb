"""Bytes per sample of a store's window, counted the way bench/peers counts them, before and after a relayout.

Run: .venv/bin/python bench/bench_store_size.py --store DIR --hours 1 --end 2026-12-03T00:00 \
     [--relayout-into COPY]

A table's bytes are its hour and day files inside [end - hours, end), its 1m and 1h rollup files inside
the window, and the whole MANIFEST.json (charged to every table: it is a few kB). Samples are the
non-null values of the columns bench/peers exports for the group (bench/peers/export.py GROUPS), and,
as "all columns", of every value column the table stores (what VictoriaMetrics gets when the export
carries them too). --relayout-into copies the store and rewrites its compacted files with the current
code (Compactor.relayout), so one backfill measures before and after.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench" / "peers")]

from export import GROUPS  # noqa: E402

from storage.compactor import Compactor  # noqa: E402
from storage.layout import HOUR_MS, MANIFEST, LiveManifest, read_manifest  # noqa: E402
from storage.schemas import SORT_KEYS, TABLES  # noqa: E402


def relayout_copy(store: Path, copy: Path) -> Path:
    """A copy of `store` whose measured tables' hour and day files are rewritten by the current code.

    Only the tables this benchmark counts (GROUPS' tables and their rollups) are rewritten: the others
    (serving_hist above all, 28 M rows an hour) would take most of the time and change no figure.
    """
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    (copy / "LOCK").unlink(missing_ok=True)
    live = LiveManifest(copy, read_manifest(copy))
    raw = {spec.table for spec in GROUPS.values()}
    Compactor(live, grace_s=0).relayout(raw | {f"{t}_{step}" for t in raw for step in ("1m", "1h")})
    live.purge()
    return copy


def table_sizes(store: Path, since_ms: int, until_ms: int) -> None:
    """Print bytes/sample per exported group, as bench/peers counts, and over all value columns."""
    manifest = read_manifest(store)
    manifest_bytes = (store / MANIFEST).stat().st_size
    for group, spec in GROUPS.items():

        def inside(name: str) -> list:
            return [f for f in manifest.of(name) if f.min_ts >= since_ms and f.max_ts < until_ms]

        files = inside(spec.table)
        rollups = sum(f.bytes for step in ("1m", "1h") for f in inside(f"{spec.table}_{step}"))
        raw = sum(f.bytes for f in files)
        paths = [str(store / f.path) for f in files]
        values = [f.name for f in TABLES[spec.table] if f.name not in {"ts", *SORT_KEYS[spec.table]}]
        numeric = [c for c in values if not TABLES[spec.table].field(c).type.equals("string")]
        counts = ", ".join(
            [" + ".join(f'count("{c}")' for c in spec.columns), " + ".join(f'count("{c}")' for c in numeric)]
        )
        exported, stored = duckdb.sql(f"SELECT {counts} FROM read_parquet({paths!r})").fetchall()[0]
        total = raw + rollups + manifest_bytes
        print(
            f"{group:8s} samples {exported:>12,}  raw {raw / exported:.3f}  + rollups and manifest "
            f"{total / exported:.3f} B/sample  (all {len(numeric)} value columns: {stored:,} samples, "
            f"{total / stored:.3f})  files {raw:,} B, rollups {rollups:,} B, manifest {manifest_bytes:,} B"
        )


def main() -> None:
    """Parse arguments, optionally relayout a copy, print the sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--hours", type=int, default=1)
    parser.add_argument("--end", required=True, help="window end, ISO UTC (e.g. 2026-12-03T00:00)")
    parser.add_argument("--relayout-into", type=Path, help="rewrite a copy's compacted files first")
    args = parser.parse_args()
    until_ms = int(datetime.fromisoformat(args.end).replace(tzinfo=UTC).timestamp() * 1000)
    store = relayout_copy(args.store, args.relayout_into) if args.relayout_into else args.store
    table_sizes(store, until_ms - args.hours * HOUR_MS, until_ms)


if __name__ == "__main__":
    main()
