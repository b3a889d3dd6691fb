"""CPU cost of one 72-GPU rack tick through the NVML collector (18 trays x 4 GPUs on the simulator).

Prints process-time per tick, split into: the simulator advancing its physics, the 18 collectors'
polls (which include the simulated driver's own function bodies), and merging the 18 frames. A second
pass times every simulated-driver call from outside, so the poll splits into driver and collector
time: on a real tray the driver's share is spent in libnvidia-ml, not in Python.

    .venv/bin/python bench/bench_collector.py [--ticks 60] [--scenario steady]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.clock import SimClock
from collectors.nvml import NvmlCollector
from collectors.sim import SimRack
from storage.frame import merge_frames

START = 1_700_000_000.0


class DriverTimer:
    """A pass-through over a simulated tray that adds up the process time spent inside its nvml* calls."""

    def __init__(self, inner: Any) -> None:
        """Wrap `inner`."""
        self.inner = inner
        self.spent = 0.0

    def __getattr__(self, name: str) -> Any:
        """The inner attribute; nvml* functions timed, and cached so the lookup costs nothing next time."""
        attr = getattr(self.inner, name)
        if not (name.startswith("nvml") and callable(attr)):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return attr(*args, **kwargs)
            finally:
                self.spent += time.process_time() - t0

        self.__dict__[name] = timed
        return timed


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

    # The same ticks again, with every driver call timed from outside: collector = poll - driver.
    timed = [DriverTimer(t) for t in rack.trays]
    timed_collectors = [NvmlCollector(t, name=f"tray-{n:02d}") for n, t in enumerate(timed, start=1)]
    driver_ms: list[float] = []
    timed_poll_ms: list[float] = []
    for _ in range(ticks):
        clock.advance(1.0)
        rack.advance_to(clock.now())
        for t in timed:
            t.spent = 0.0
        t1 = time.process_time()
        for c in timed_collectors:
            c.poll(round(clock.now() * 1000))
        timed_poll_ms.append((time.process_time() - t1) * 1000)
        driver_ms.append(sum(t.spent for t in timed) * 1000)
    collector_ms = [p - d for p, d in zip(timed_poll_ms, driver_ms, strict=True)]

    def show(label: str, xs: list[float]) -> None:
        p90 = sorted(xs)[int(len(xs) * 0.9)]
        print(f"  {label:<36} median {statistics.median(xs):7.2f} ms   p90 {p90:7.2f} ms")

    print(f"rack tick, 72 GPUs / 18 trays, scenario {scenario}, {ticks} ticks, process_time per tick:")
    show("sim advance (physics, 1 s step)", sim_ms)
    show("18 collector polls (incl. sim NVML)", poll_ms)
    show("merge 18 frames", merge_ms)
    print(f"  rows per rack frame: {rows}")
    show("  of which simulated driver calls", driver_ms)
    show("  of which collector (poll - driver)", collector_ms)
    print("  (the collector figure includes ~1 us per call of timing overhead; target <= 20 ms)")
    for c in collectors + timed_collectors:
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
