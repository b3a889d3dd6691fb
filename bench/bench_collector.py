"""CPU cost of one 72-GPU rack tick through the NVML collector (18 trays x 4 GPUs on the simulator).

Prints process-time per tick, split into: the simulator advancing its physics, the 18 collectors'
polls (which include the simulated driver's own function bodies), and merging the 18 frames. A
profiled pass then splits the poll time into simulated-driver time and collector time, because on a
real tray the driver's share is spent in libnvidia-ml, not in Python.

    .venv/bin/python bench/bench_collector.py [--ticks 60] [--scenario steady]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.clock import SimClock
from collectors.nvml import NvmlCollector
from collectors.sim import SimRack
from storage.frame import merge_frames

START = 1_700_000_000.0
SIM_DIR = str(Path(__file__).resolve().parents[1] / "collectors" / "sim")


def run(ticks: int, scenario: str) -> None:
    """Poll a simulated rack `ticks` times at 1 s of sim time per tick and print the figures."""
    clock = SimClock(start=START)
    rack = SimRack(seed=0, scenario=scenario, clock=clock)
    collectors = [NvmlCollector(t, name=f"tray-{n:02d}") for n, t in enumerate(rack.trays, start=1)]
    sim_ms: list[float] = []
    poll_ms: list[float] = []
    merge_ms: list[float] = []
    rows = 0

    def tick() -> None:
        nonlocal rows
        clock.advance(1.0)
        now = clock.now()
        ts = round(now * 1000)
        t0 = time.process_time()
        rack.advance_to(now)
        t1 = time.process_time()
        frames = [c.poll(ts) for c in collectors]
        t2 = time.process_time()
        frame = merge_frames(ts, frames)
        t3 = time.process_time()
        sim_ms.append((t1 - t0) * 1000)
        poll_ms.append((t2 - t1) * 1000)
        merge_ms.append((t3 - t2) * 1000)
        rows = frame.rows

    for _ in range(3):  # warm caches and the first process sampling
        tick()
    sim_ms.clear(), poll_ms.clear(), merge_ms.clear()
    for _ in range(ticks):
        tick()

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(max(5, ticks // 4)):
        clock.advance(1.0)
        rack.advance_to(clock.now())
        for c in collectors:
            c.poll(round(clock.now() * 1000))
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    in_sim = sum(tt for (file, _, fn), (_, _, tt, _, _) in stats.items() if file.startswith(SIM_DIR))
    total = sum(tt for (_, _, tt, _, _) in stats.values())

    def show(label: str, xs: list[float]) -> None:
        p90 = sorted(xs)[int(len(xs) * 0.9)]
        print(f"  {label:<36} median {statistics.median(xs):7.2f} ms   p90 {p90:7.2f} ms")

    print(f"rack tick, 72 GPUs / 18 trays, scenario {scenario}, {ticks} ticks, process_time per tick:")
    show("sim advance (physics, 1 s step)", sim_ms)
    show("18 collector polls (incl. sim NVML)", poll_ms)
    show("merge 18 frames", merge_ms)
    print(f"  rows per rack frame: {rows}")
    share = in_sim / total if total else 0.0
    poll = statistics.median(poll_ms)
    print(
        f"profiled split of poll time: simulated driver {share:.0%}, collector {1 - share:.0%} "
        f"-> collector alone ~{poll * (1 - share):.2f} ms per rack tick (target <= 20 ms)"
    )
    for c in collectors:
        c.close()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--scenario", default="steady")
    args = parser.parse_args()
    run(args.ticks, args.scenario)


if __name__ == "__main__":
    main()
