"""Benchmark replay seeks: the time from a seek request to the head holding the new window. Prints figures.

Backfills a simulated store (1 h by default, fast frame path, compacted as a collector leaves it) unless
--store names one, then times seeks to random places (a fresh read of HISTORY_FRAMES frames per table),
short forward seeks (+10 s, read ahead), back steps inside the held frames, and opening the store.

    .venv/bin/python bench/bench_replay.py [--hours 1] [--seeks 40] [--store DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.backfill import backfill
from monitor.replay import HISTORY_FRAMES
from monitor.replay_session import ReplaySession
from storage.head import Head
from storage.reader import StoreReader

END_S = 1_750_000_000


def figures(name: str, samples_s: list[float]) -> None:
    """Print median / p95 / max in milliseconds."""
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    median = statistics.median(ms)
    print(f"  {name:<34} n={len(ms):3d}  median {median:7.1f} ms  p95 {p95:7.1f} ms  max {ms[-1]:7.1f} ms")


def timed(session: ReplaySession, request: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds in all threads) from a request to the head holding its frames."""
    cpu = _cpu()
    began = time.perf_counter()
    request()
    session.service()
    return time.perf_counter() - began, _cpu() - cpu


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(name: str, samples: list[tuple[float, float]]) -> None:
    """Print the figures of one kind of seek."""
    print(f"{name}:")
    figures("wall time", [s[0] for s in samples])
    figures("CPU time, all threads", [s[1] for s in samples])


def main() -> None:
    """Backfill (or open) a store and time seeks on it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated history to backfill")
    parser.add_argument("--seeks", type=int, default=40, help="random seeks to time")
    parser.add_argument("--store", type=Path, help="an existing store (no backfill)")
    parser.add_argument("--keep", action="store_true", help="keep the backfilled store and print its path")
    args = parser.parse_args()

    tmp: Path | None = None
    root = args.store
    if root is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
        root = tmp / "store"
        print(f"backfilling {args.hours:g} h of the simulated rack (seed 1, steady) ...", flush=True)
        result = backfill(root, args.hours * 3600, seed=1, end_s=END_S)
        print(f"  {result.ticks} ticks, {result.rows:,} rows in {result.seconds:.1f} s")
    try:
        began = time.perf_counter()
        reader = StoreReader(root)
        session = ReplaySession(reader, Head(), monotonic=time.perf_counter)
        opened = time.perf_counter() - began
        session.service()
        ticks = session.cursor.ticks
        files = len(reader.manifest.files)
        print(f"store {root}: {len(ticks)} ticks, {files} files; window {HISTORY_FRAMES} frames")
        print(f"  open (manifest, views, tick list)   {opened * 1000:.1f} ms")
        rng = random.Random(1)
        random_seeks = [
            timed(session, lambda: session.seek_to(ticks[rng.randrange(HISTORY_FRAMES, len(ticks))]))
            for _ in range(args.seeks)
        ]
        session.seek_to(ticks[len(ticks) // 2])
        session.service()
        forward = [timed(session, lambda: session.seek_by(10_000)) for _ in range(args.seeks)]
        back = [timed(session, lambda: session.step(-1)) for _ in range(args.seeks)]
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times rise with it)")
        report("seek to a random time (fresh read)", random_seeks)
        report("+10 s (read ahead in chunks of 60 ticks)", forward)
        report("step -1 tick (frames held)", back)
        reader.close()
        target = 200.0
        median = statistics.median(s[0] for s in random_seeks) * 1000
        verdict = "met" if median <= target else "NOT met"
        print(f"target: random seek, median wall <= {target:.0f} ms: {verdict}")
    finally:
        if tmp is not None:
            if args.keep:
                print(f"kept {root}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
