"""Export benchmark: `monitor export` of 1 h of the full simulated rack (target <= 3 s), with its parts.

Run: .venv/bin/python bench/bench_export.py [--store DIR] [--minutes 60] [--repeat 3]

Data: the simulated GB300 NVL72 (steady scenario, seed 2) backfilled at 1 Hz through the real
writer (`monitor sim --backfill`), 72 GPUs, 1,296 NVLink rows and 72 inference endpoints a tick.
Backfilling an hour takes about a minute; pass --store to reuse one (it is kept when given).

Figures: the whole export (Parquet bundle + EXPORT.json + report.html) for the aligned window (every
store file lies inside it and is copied), for a window cut mid-file (edge files are re-encoded),
the same without report.html, with --gpus (every file is cut), and `monitor report` alone.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, best) wall seconds over `repeat` runs."""
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs), min(runs)


def main() -> None:
    """Backfill (or reuse) a store, export windows of it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="A store to reuse (backfilled there if empty).")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    store = args.store or work / "store"
    seconds = args.minutes * 60
    try:
        if not (store / "MANIFEST.json").exists():
            done = backfill(store, seconds, scenario="steady", seed=2, end_s=END_S)
            print(f"backfill: {done.ticks} ticks, {done.rows:,} rows in {done.seconds:.1f} s")
        with StoreReader(store) as reader:
            lo, hi = reader.time_range("gpu") or (0, 0)
        aligned = Window(lo, hi)
        mid = Window(lo + 450_000, hi)  # starts 7.5 min in: the first hour file is cut
        out = work / "bundle"

        def run(window: Window, **kw: object) -> Callable[[], object]:
            return lambda: export(store, out, window, force=True, **kw)  # type: ignore[arg-type]

        result = export(store, out, aligned, force=True)
        rows = sum(result.rows.values())
        print(
            f"window: {aligned.seconds / 60:.0f} min, {rows:,} rows, bundle {result.bytes / 1e6:.1f} MB "
            f"in {result.files} files; report.html {(out / 'report.html').stat().st_size / 1e3:.0f} kB"
        )
        cases = [
            ("export, whole files copied (with report.html)", run(aligned)),
            ("export, whole files copied (no report.html)", run(aligned, with_report=False)),
            ("export, window cut mid-file (with report.html)", run(mid)),
            ("export, --gpus T01 (every file cut, with report)", run(aligned, gpus=parse_gpus("T01"))),
        ]
        for name, fn in cases:
            median, best = timed(fn, args.repeat)
            target = (
                ("  (target <= 3 s: " + ("met)" if median <= 3.0 else "MISSED)"))
                if name == cases[0][0]
                else ""
            )
            print(f"{name:52s} median {median:6.2f} s  best {best:6.2f} s{target}")

        def report() -> None:
            with StoreReader(store) as reader:
                summarize(reader, aligned)

        median, best = timed(report, args.repeat)
        print(f"{'monitor report (summary maths alone)':52s} median {median:6.2f} s  best {best:6.2f} s")
    finally:
        if args.store is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "bundle", ignore_errors=True)


if __name__ == "__main__":
    main()
