"""The alert engine's CPU per tick, minute by minute, as its windows fill (the recorder and the live
client both run it on every frame).

Run: .venv/bin/python bench/bench_alerts.py [--minutes 7] [--scenario steady] [--seed 0]

Frames come from the simulated GB300 NVL72 (monitor.backfill.SimFrames, the fast path, serving rows
included), made before the clock starts; only AlertEngine.evaluate is timed (process CPU). The rules'
longest window is the tokens-drop baseline, 300 s: a figure that still rises after minute 5 is a cost
growing with a window.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.alerts import AlertEngine
from monitor.backfill import SimFrames


def main() -> None:
    """Print one row per simulated minute: ms of CPU per tick in AlertEngine.evaluate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=7)
    parser.add_argument("--scenario", default="steady")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source = SimFrames(args.seed, args.scenario, 1_796_000_000, 1.0, fast=True)
    frames = [next(source) for _ in range(args.minutes * 60)]
    source.close()
    engine = AlertEngine()
    print("| minute | ms/tick |\n|---|---|")
    for minute in range(args.minutes):
        began = time.process_time()
        for frame in frames[minute * 60 : (minute + 1) * 60]:
            engine.evaluate(frame)
        print(f"| {minute + 1} | {(time.process_time() - began) * 1000 / 60:.1f} |", flush=True)


if __name__ == "__main__":
    main()
