"""One scrape tick end to end: 18 tray agents + 72 vLLM servers over loopback HTTP -> one rack Frame.

The simulated rack and its 90 HTTP servers run in a child process, so the figures are the scraping
side's alone: CPU seconds of this process per tick (HTTP client on the source's loop thread, gzip
decoding, parsing and mapping in the polling thread) and the wall time of poll(). Target: <= 60 ms of
CPU per tick on one core. Run: .venv/bin/python bench/bench_scrape.py [--ticks N] [--engine vllm]
The machine may be shared: the load average is printed with the figures (compare CPU, not wall time).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.config import RackConfig, parse_config, render_config
from collectors.scrape import ScrapeSource

TARGET_CPU_MS = 60.0


def serve(conn: Connection, engine: str) -> None:
    """Child process: serve the simulated rack until the parent says stop."""
    from collectors.clock import SimClock
    from collectors.sim import SimRack
    from collectors.sim.http import SimServers

    rack = SimRack(seed=0, clock=SimClock(start=time.time(), speed=1.0), engines=(engine,))
    with SimServers(rack) as servers:
        assert servers.config is not None
        conn.send(render_config(servers.config))
        conn.recv()


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=20, help="warm ticks to time (median and p90 printed)")
    parser.add_argument("--engine", default="vllm", choices=("vllm", "sglang", "trtllm"))
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    args = parser.parse_args()
    print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    ours, theirs = mp.Pipe()
    child = mp.get_context("spawn").Process(target=serve, args=(theirs, args.engine), daemon=True)
    child.start()
    try:
        config: RackConfig = parse_config(ours.recv(), "sim")
        source = ScrapeSource.from_config(config, timeout_s=0.9 * args.interval)
        try:
            cpu: list[float] = []
            wall: list[float] = []
            for tick in range(args.ticks + 1):
                c0, w0 = time.process_time(), time.perf_counter()
                frame = source.poll(int(time.time() * 1000))
                c1, w1 = time.process_time(), time.perf_counter()
                if tick:  # the first tick fills the connection pool and the parser's series cache
                    cpu.append((c1 - c0) * 1000)
                    wall.append((w1 - w0) * 1000)
                else:
                    first = (c1 - c0) * 1000
                    rows = {name: batch.num_rows for name, batch in frame.batches.items()}
                time.sleep(max(0.0, args.interval - (time.perf_counter() - w0)))
            bad = [s.name for s in source.statuses() if s.state]
        finally:
            source.close()
    finally:
        ours.send("stop")
        child.join(timeout=10)
    cpu.sort()
    print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(
        f"endpoints: {len(config.trays)} tray agents + {len(config.servers)} {args.engine} servers;"
        f" rows {rows}"
    )
    print(f"first tick (cold connections and caches): {first:.1f} ms CPU")
    p90 = cpu[int(0.9 * (len(cpu) - 1))]
    print(
        f"CPU per tick over {len(cpu)} ticks: median {statistics.median(cpu):.1f} ms, p90 {p90:.1f} ms"
        f" (target <= {TARGET_CPU_MS:.0f} ms on one core)"
    )
    print(f"poll() wall time: median {statistics.median(wall):.1f} ms")
    if bad:
        print(f"endpoints not OK at the end: {', '.join(bad)}")


if __name__ == "__main__":
    main()
