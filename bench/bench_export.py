"""Export and report benchmark over a store of the full simulated rack: each case with wall, CPU and load.

Run: .venv/bin/python bench/bench_export.py [--store DIR] [--hours 1] [--repeat 3]

Data: the simulated GB300 NVL72 (steady scenario, seed 2) backfilled at 1 Hz through the real writer
(`monitor sim --backfill`): 72 GPUs, 1,296 NVLink rows, 72 inference endpoints and their latency
histograms (serving_hist, ~17 M rows a rack-hour) a tick. Backfilling is slow (about a minute an hour
on a quiet 2-core box, many times that under load); pass --store to reuse one (kept when given).

Cases, over the store's last `--hours` (the window the store holds, ending at its last tick):
- whole files: the window from the store's first tick, so every file lies inside it and is copied
  (with report.html);
- mid-file window: starts 7.5 min past the first tick and ends 2.5 min before the last, so the files
  at both edges are cut (with report.html): the headline case, target <= 3 s an hour;
- --gpus T01: every file is cut row by row (with report.html);
- report maths alone: `monitor report`'s summary over the mid-file window (target <= 0.5 s an hour).

Wall is the median of --repeat runs; CPU is this process's user+system seconds over the same run
(every thread: DuckDB's and the export's pool); load is the 1-minute load average before each case.
The machine is shared: compare only figures printed by the same run, or runs at the same load.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    """Backfill (or reuse) a store, export and report windows of it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="A store to reuse (backfilled there if empty).")
    parser.add_argument("--hours", type=float, default=1.0, help="Window (and backfill) length.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    store = args.store or work / "store"
    try:
        if not (store / "MANIFEST.json").exists():
            done = backfill(store, args.hours * 3600, scenario="steady", seed=2, end_s=END_S)
            print(f"backfill: {done.ticks} ticks, {done.rows:,} rows in {done.seconds:.1f} s")
        with StoreReader(store) as reader:
            lo, hi = reader.time_range("gpu") or (0, 0)
        lo = max(lo, hi - round(args.hours * 3_600_000) + 1000)
        whole, mid = Window(lo, hi), Window(lo + 450_000, hi - 150_000)
        out = work / "bundle"

        def run(window: Window, **kw: object) -> Callable[[], object]:
            return lambda: export(store, out, window, force=True, **kw)  # type: ignore[arg-type]

        result = export(store, out, mid, force=True)
        print(
            f"commit {commit()}, {os.cpu_count()} CPUs; store {store}: window {args.hours:g} h, mid-file "
            f"bundle {sum(result.rows.values()):,} rows, {result.bytes / 1e6:.1f} MB in {result.files} files"
        )

        def report() -> None:
            with StoreReader(store) as reader:
                summarize(reader, mid)

        cases = [
            ("whole files copied, with report.html", run(whole)),
            ("mid-file window, with report.html", run(mid)),
            ("mid-file window, no report.html", run(mid, with_report=False)),
            ("--gpus T01 (every file cut), with report.html", run(whole, gpus=parse_gpus("T01"))),
            ("report maths alone", report),
        ]
        for name, fn in cases:
            wall, cpu, load = timed(fn, args.repeat)
            target = TARGETS.get(args.hours, {}).get(name)
            verdict = ""
            if target is not None:
                verdict = f"  target <= {target:g} s: " + ("met" if wall <= target else "MISSED")
            print(f"{name:48s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  load {load:5.1f}{verdict}")
    finally:
        if args.store is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "bundle", ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
