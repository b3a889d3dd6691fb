"""Export and report benchmark over a store of the full simulated rack: each case with wall, CPU and load.

Run: .venv/bin/python bench/bench_export.py [--store DIR] [--hours 1,24] [--repeat 3]

Data: the simulated GB300 NVL72 (steady scenario, seed 2) backfilled at 1 Hz through the real writer
(`monitor sim --backfill`): 72 GPUs, 1,296 NVLink rows, 72 inference endpoints and their latency
histograms (serving_hist, ~25 M rows a rack-hour) a tick. Backfilling is slow (about a minute an hour
on a quiet 2-core box, many times that under load), so a day is not simulated: for windows past the
store's length, bench/make_long_store.py replicates the simulated hour in time into a day store
(REPLICATED simulator data: the same hour 24 times, counters continued; one day file per table, made
by the real compactor). Pass --store to reuse a store (a long store serves every window); without
it both stores are built under a temporary directory and removed afterwards.

Cases, for each window length in --hours (the store's last H hours, ending at its last tick):
- whole files: the window from the first tick of those H hours; with a store of exactly H hours
  every file lies inside it and is copied (with report.html);
- mid-file window: starts 7.5 min past that first tick and ends 2.5 min before the last, so the
  files at both edges are cut (with report.html): the headline case, target <= 3 s an hour and
  <= 30 s a day (issue 16); a day file's inner 10-minute bands are copied as bytes;
- the same window without report.html;
- --gpus T01: every file is cut row by row (with report.html);
- report maths alone: `monitor report`'s summary over the mid-file window (target <= 0.5 s an hour,
  <= 2 s a day).

Wall is the median of --repeat runs; CPU is this process's user+system seconds over the same run
(every thread: DuckDB's and the export's pool); load is the 1-minute load average before each case.
The machine is shared: compare only figures printed by the same run, or runs at the same load.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.make_long_store import make_long_store
from monitor.backfill import backfill
from monitor.export import export, parse_gpus
from monitor.report import summarize
from monitor.timespec import Window
from storage.reader import StoreReader

END_S = 1_750_003_600
TARGETS = {
    1.0: {"mid-file window, with report.html": 3.0, "report maths alone": 0.5},
    24.0: {"mid-file window, with report.html": 30.0, "report maths alone": 2.0},
}
"""Issue 16's targets (wall seconds) by window length in hours."""


def commit() -> str:
    """The code's git commit (with '+' when the tree has changes), or '?' outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return sha + ("+" if dirty else "")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """(median wall s, median CPU s, load average before the first run) over `repeat` runs."""
    load = os.getloadavg()[0]
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), load


def windows(store: Path, hours: float) -> tuple[Window, Window]:
    """(whole, mid-file) windows over the last `hours` of `store`."""
    with StoreReader(store) as reader:
        lo, hi = reader.time_range("gpu") or (0, 0)
    lo = max(lo, hi - round(hours * 3_600_000) + 1000)
    return Window(lo, hi), Window(lo + 450_000, hi - 150_000)


def cases(store: Path, out: Path, hours: float) -> list[tuple[str, Callable[[], object]]]:
    """The benchmark's cases over the last `hours` of `store`, writing bundles to `out`."""
    whole, mid = windows(store, hours)

    def run(window: Window, **kw: object) -> Callable[[], object]:
        return lambda: export(store, out, window, force=True, **kw)  # type: ignore[arg-type]

    def report() -> None:
        with StoreReader(store) as reader:
            summarize(reader, mid)

    return [
        ("whole files copied, with report.html", run(whole)),
        ("mid-file window, with report.html", run(mid)),
        ("mid-file window, no report.html", run(mid, with_report=False)),
        ("--gpus T01 (every file cut), with report.html", run(whole, gpus=parse_gpus("T01"))),
        ("report maths alone", report),
    ]


def stores(args: argparse.Namespace, work: Path, longest: float) -> Path:
    """The store to read: --store, or a backfilled hour (replicated into a day when a window needs it)."""
    if args.store is not None:
        return args.store
    hour = work / "store"
    done = backfill(hour, 3600, scenario="steady", seed=2, end_s=END_S)
    print(f"backfill: {done.ticks} ticks, {done.rows:,} rows in {done.seconds:.1f} s")
    if longest <= 1:
        return hour
    long = work / "long"
    make_long_store(hour, long, math.ceil(longest), log=lambda _: None)
    print(f"long store: {math.ceil(longest)} copies of the simulated hour (bench/make_long_store.py)")
    return long


def main() -> None:
    """Build (or reuse) a store, export and report windows of it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="A store to reuse (a long store serves every window).")
    parser.add_argument("--hours", default="1,24", help="Window lengths in hours, comma-separated.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lengths = [float(h) for h in args.hours.split(",") if h.strip()]
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        store = stores(args, work, max(lengths))
        with StoreReader(store) as reader:
            lo, hi = reader.time_range("gpu") or (0, 0)
        held = (hi - lo + 1000) / 3_600_000
        print(f"commit {commit()}, {os.cpu_count()} CPUs; store {store}: {held:.2f} h")
        out = work / "bundle"
        for hours in lengths:
            if hours > held + 1e-6:
                print(f"{hours:g} h window: skipped, the store holds {held:.2f} h")
                continue
            result = export(store, out, windows(store, hours)[1], force=True)
            print(
                f"{hours:g} h window: mid-file bundle {sum(result.rows.values()):,} rows, "
                f"{result.bytes / 1e6:.1f} MB in {result.files} files"
            )
            for name, fn in cases(store, out, hours):
                wall, cpu, load = timed(fn, args.repeat)
                target = TARGETS.get(hours, {}).get(name)
                verdict = ""
                if target is not None:
                    verdict = f"  target <= {target:g} s: " + ("met" if wall <= target else "MISSED")
                print(
                    f"{hours:3g} h {name:48s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  load {load:5.1f}{verdict}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
