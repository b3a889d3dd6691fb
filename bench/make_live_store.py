"""Build a store as a live recorder leaves it MINUTE minutes into a clock hour: for "the last hour" reports.

Run: .venv/bin/python bench/make_live_store.py OUT [--minute 37] [--hours 1.17]

bench/bench_export.py's store is backfilled with 10-minute segments and ends on an hour, so its windows
read compacted hours; a post-mortem of "the last hour" on a running rack reads a store whose newest
hour is still open: `monitor collect` seals a segment every 10 s (`--flush`) and its compactor merges
each 30 into a part (with the 1-minute rollups of the minutes sealed so far). This backfills the
simulated rack (scenario steady, seed 2, as bench_export) with those settings, ending MINUTE minutes
(and 20 s) past an hour, so the open hour holds parts, their rollups and up to 30 segments as a
recorder's would. Then: `bench/bench_report.py OUT --hours 1`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.backfill import backfill

HOUR_S = 3600
BASE_HOUR_S = 1_750_000_000 // HOUR_S * HOUR_S
"""The hour the store's open hour starts at (bench_export's END_S is the next one)."""
RECORDER_FLUSH_S = 10.0
"""`monitor collect`'s default --flush: data time per sealed segment."""


def main() -> None:
    """Backfill the store and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="The new store's directory.")
    parser.add_argument("--minute", type=int, default=37, help="Minutes into the open hour (default 37).")
    parser.add_argument("--hours", type=float, default=1 + 10 / 60, help="History to write (default 70 min).")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists; give a new directory")
    end_s = BASE_HOUR_S + args.minute * 60 + 20
    began = time.strftime("%H:%M:%S")
    done = backfill(
        args.out,
        args.hours * HOUR_S,
        scenario="steady",
        seed=2,
        end_s=end_s,
        flush_interval_s=RECORDER_FLUSH_S,
    )
    print(f"{began}: {done.ticks} ticks, {done.rows:,} rows in {done.seconds:.0f} s into {args.out}")


if __name__ == "__main__":
    main()
