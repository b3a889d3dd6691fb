"""`monitor report`'s maths over stores of the full simulated rack: wall, CPU and load for each.

Run: .venv/bin/python bench/bench_report.py STORE [STORE ...] [--repeat 5]

Each STORE is a store of the simulated rack (bench/bench_export.py backfills a 1 h one; bench/
make_long_store.py replicates it to 24 h). The window is the one bench_export.py's "report maths alone"
case takes: the store's last tick minus its length, starting 7.5 min later and ending 2.5 min before
its last tick, so both edges fall mid-minute (raw rows there) and whole minutes and hours come from
the rollups. A --hours shorter than the store takes only its last hours. --to-end takes the last
--hours up to the newest row instead, as `monitor report --last 1h` on a running rack: over a store
from bench/make_live_store.py that reads the open hour's rolled minutes and its newest ones raw.

Wall is the median of --repeat runs after one warm-up run (imports, the OS's file cache); CPU is this
process's user+system seconds (every DuckDB thread) over the same runs, median; load is the 1-minute
load average before the first run. The machine may be shared: compare CPU, and only figures printed
by the same run. Issue 16's targets (wall, quiet 2-core machine): <= 0.5 s for 1 h, <= 2 s for 24 h.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.report import summarize
from monitor.timespec import Window
from storage.reader import StoreReader

TARGETS_S = {1: 0.5, 24: 2.0}
"""Issue 16's wall targets by window length in whole hours."""


def report_window(store: Path, hours: float | None, to_end: bool = False) -> Window:
    """bench_export.py's mid-file window over the store's last `hours` (all of it when None); with
    `to_end`, `monitor report --last HOURS` instead: the last `hours` up to the newest row."""
    with StoreReader(store) as reader:
        lo, hi = reader.time_range("gpu") or (0, 0)
    if to_end:
        return Window(hi - round((hours or 1) * 3_600_000) + 1, hi)
    if hours is not None:
        lo = max(lo, hi - round(hours * 3_600_000) + 1000)
    return Window(lo + 450_000, hi - 150_000)


def measure(store: Path, window: Window, repeat: int) -> tuple[float, float, float]:
    """(median wall s, median CPU s, load before) of summarize() over `window`, after a warm-up."""

    def once() -> None:
        with StoreReader(store) as reader:
            summarize(reader, window)

    once()
    load = os.getloadavg()[0]
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        once()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), load


def main() -> None:
    """Print one line per store: window length, wall, CPU, load and the target it is held to."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", type=Path, nargs="+", help="Stores of the simulated rack.")
    parser.add_argument("--hours", type=float, help="Take only the last HOURS of each store.")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--to-end",
        action="store_true",
        help="The window ends at the newest row (`--last`), as a post-mortem of a live store "
        "(bench/make_live_store.py) reads it: its open hour's newest minutes raw.",
    )
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; report maths (monitor.report.summarize), median of {args.repeat}")
    for store in args.stores:
        if not (store / "MANIFEST.json").exists():
            sys.exit(f"bench_report: {store} is not a store (no MANIFEST.json)")
        window = report_window(store, args.hours, args.to_end)
        hours = (window.until_ms - window.since_ms + (0 if args.to_end else 600_000)) / 3_600_000
        wall, cpu, load = measure(store, window, args.repeat)
        target = TARGETS_S.get(round(hours))
        verdict = f"  target <= {target:g} s: {'met' if wall <= target else 'MISSED'}" if target else ""
        print(f"{store}  {hours:5.1f} h  wall {wall:6.2f} s  cpu {cpu:6.2f} s  load {load:5.1f}{verdict}")


if __name__ == "__main__":
    main()
