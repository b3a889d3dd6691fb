"""Benchmark the rack view: per-frame cost, CPU at 1 Hz, time to first frame. Prints its figures.

Frames come from the simulated rack (18 NvmlCollector over SimRack trays, merged per tick) when
collectors.sim and collectors.nvml are present, otherwise from a small synthetic generator.

    .venv/bin/python bench/bench_tui.py [--frames 60] [--cpu-seconds 30] [--scenario gpu-lost]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.tui.app import RackApp
from monitor.tui.messages import FrameReady
from monitor.view.builder import SnapshotBuilder
from storage.frame import Frame, batch_from_columns, merge_frames
from storage.head import Head

SIZE = (200, 50)
START_S = 1_767_268_800.0


def sim_frames(n: int, scenario: str, seed: int = 1) -> tuple[list[Frame], str]:
    """n one-second rack frames from the simulator (18 trays through the real NVML collector)."""
    from collectors.clock import SimClock
    from collectors.nvml import NvmlCollector
    from collectors.sim import SimRack

    clock = SimClock(START_S)
    rack = SimRack(seed=seed, scenario=scenario, clock=clock, fault_at=n / 2)
    collectors = [
        NvmlCollector(tray_nvml, name=f"tray{i:02d}") for i, tray_nvml in enumerate(rack.trays, start=1)
    ]
    frames = []
    try:
        for _ in range(n):
            clock.advance(1.0)
            ts = round(clock.now() * 1000)
            frames.append(merge_frames(ts, [c.poll(ts) for c in collectors]))
    finally:
        for c in collectors:
            c.close()
    return frames, f"SimRack(seed={seed}, scenario={scenario!r}) via 18 NvmlCollector"


def synthetic_frames(n: int) -> tuple[list[Frame], str]:
    """n frames with growing counters, for trees without the simulator."""
    frames = []
    for t in range(n):
        ts = int(START_S * 1000) + t * 1000
        gpus = range(72)
        cols = {
            "ts": [ts] * 72,
            "gpu": list(gpus),
            "uuid": [f"GPU-{i:08x}" for i in gpus],
            "tray": [i // 4 + 1 for i in gpus],
            "state": [0] * 72,
            "util_gpu_pct": [(i * 7 + t) % 101 for i in gpus],
            "power_mw": [200_000 + ((i * 13 + t * 7) % 100) * 10_000 for i in gpus],
            "power_limit_mw": [1_400_000] * 72,
            "nvlink_tx_kib": [t * (i + 1) * 900_000 for i in gpus],
            "nvlink_rx_kib": [t * (i + 1) * 900_000 for i in gpus],
        }
        links = {
            "ts": [ts] * 1296,
            "gpu": [g for g in gpus for _ in range(18)],
            "link": [k for _ in gpus for k in range(18)],
            "state": [1] * 1296,
            "tx_kib": [t * (g + 1) * 50_000 for g in gpus for _ in range(18)],
            "rx_kib": [t * (g + 1) * 50_000 for g in gpus for _ in range(18)],
        }
        frames.append(
            Frame(
                ts,
                {"gpu": batch_from_columns("gpu", cols), "nvlink": batch_from_columns("nvlink", links)},
            )
        )
    return frames, "synthetic frames (collectors.sim not available)"


def make_frames(n: int, scenario: str) -> tuple[list[Frame], str]:
    """Simulated frames when the simulator is in the tree, synthetic ones otherwise."""
    try:
        return sim_frames(n, scenario)
    except ImportError:
        return synthetic_frames(n)


class TimedApp(RackApp):
    """RackApp whose snapshot arrivals can be awaited."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arrived = asyncio.Event()

    def on_frame_ready(self, message: FrameReady) -> None:
        self.arrived.set()


def ms(values: list[float]) -> str:
    """median / p95 / max in milliseconds."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    median = statistics.median(ordered)
    return f"median {median * 1e3:6.2f} ms  p95 {p95 * 1e3:6.2f} ms  max {ordered[-1] * 1e3:6.2f} ms"


async def bench_frame_cost(frames: list[Frame]) -> None:
    """Build each snapshot (as the worker does) and apply it to the app at 200x50 (and paint)."""
    builder = SnapshotBuilder()
    build_s: list[float] = []
    apply_s: list[float] = []
    apply_cpu_s: list[float] = []
    app = TimedApp(Head(), interval=0)
    async with app.run_test(size=SIZE) as pilot:
        for n in range(1, len(frames) + 1):
            t0 = time.perf_counter()
            snapshot = builder.build(frames[:n], version=n)
            t1, c1 = time.perf_counter(), time.process_time()
            app.post_message(FrameReady(snapshot))
            await pilot.pause()  # handled, laid out and painted
            t2, c2 = time.perf_counter(), time.process_time()
            build_s.append(t1 - t0)
            apply_s.append(t2 - t1)
            apply_cpu_s.append(c2 - c1)
    print(f"frame cost at {SIZE[0]}x{SIZE[1]} over {len(frames)} frames")
    print(f"  build RackSnapshot      {ms(build_s)}")
    print(f"  apply + paint, wall     {ms(apply_s)}  (includes Pilot's wait for idle)")
    print(f"  apply + paint, CPU      {ms(apply_cpu_s)}")


async def bench_first_frame(frames: list[Frame]) -> None:
    """From starting the app over a filled head to the first snapshot drawn."""
    head = Head()
    for frame in frames:
        head.append(frame)
    t0 = time.perf_counter()
    app = TimedApp(head, interval=1.0)
    async with app.run_test(size=SIZE) as pilot:
        t_started = time.perf_counter()
        await asyncio.wait_for(app.arrived.wait(), 30)
        await pilot.pause()
        t_drawn = time.perf_counter()
    print(
        f"time to first frame     {(t_drawn - t0) * 1e3:6.1f} ms from App() "
        f"({(t_started - t0) * 1e3:.1f} ms to a running app, headless, {len(frames)} frames in head)"
    )


async def bench_cpu(frames: list[Frame], seconds: float) -> None:
    """Process CPU / wall while a feeder appends one pre-built frame a second (app interval 1 s)."""
    head = Head()
    head.append(frames[0])
    stop = threading.Event()

    def feed() -> None:
        for frame in frames[1:]:
            if stop.wait(1.0):
                return
            head.append(frame)

    app = TimedApp(head, interval=1.0)
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.wait_for(app.arrived.wait(), 30)
        await pilot.pause()
        feeder = threading.Thread(target=feed, daemon=True)
        cpu0, wall0, applied0 = time.process_time(), time.perf_counter(), app.frames_applied
        feeder.start()
        await asyncio.sleep(seconds)  # the benchmark's measurement window, not a wait for an event
        cpu1, wall1, applied1 = time.process_time(), time.perf_counter(), app.frames_applied
        stop.set()
        feeder.join()
    share = (cpu1 - cpu0) / (wall1 - wall0)
    print(
        f"CPU at 1 Hz             {share * 100:5.2f} % of one core over {wall1 - wall0:.0f} s "
        f"({applied1 - applied0} frames applied, headless at {SIZE[0]}x{SIZE[1]})"
    )


def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames for the frame-cost run")
    parser.add_argument("--cpu-seconds", type=float, default=30.0, help="length of the CPU run")
    parser.add_argument("--scenario", default="gpu-lost", help="sim scenario")
    args = parser.parse_args()
    count = max(args.frames, int(args.cpu_seconds) + 2)
    t0 = time.perf_counter()
    frames, origin = make_frames(count, args.scenario)
    print(f"frames: {count} from {origin} ({time.perf_counter() - t0:.1f} s to make)")
    asyncio.run(bench_frame_cost(frames[: args.frames]))
    asyncio.run(bench_first_frame(frames[: args.frames]))
    asyncio.run(bench_cpu(frames, args.cpu_seconds))


if __name__ == "__main__":
    main()
