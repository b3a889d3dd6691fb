"""One scrape tick end to end: 18 tray agents + 72 vLLM servers over loopback HTTP -> one rack Frame.

The simulated rack and its 90 HTTP servers run in a child process, so the figures are the scraping
side's alone: CPU seconds of this process per tick, split into the polling thread's (parsing, mapping,
the frame) and the rest, the source's HTTP loop thread (collectors.scrape_client, gzip decoding), and
the wall time of poll(). Target: <= 60 ms of CPU per tick on one core. Run:
.venv/bin/python bench/bench_scrape.py [--ticks N] [--engine vllm] [--trays both|arrow|text]: with
`both` (the default) two sources take turns each tick, one asking the trays for the agent's Arrow
stream (the collector's default), one for text only, so the two compare on the same machine state.
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
    parser.add_argument(
        "--trays", default="both", choices=("both", "arrow", "text"), help="what the trays are asked for"
    )
    args = parser.parse_args()
    print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    ours, theirs = mp.Pipe()
    child = mp.get_context("spawn").Process(target=serve, args=(theirs, args.engine), daemon=True)
    child.start()
    try:
        config: RackConfig = parse_config(ours.recv(), "sim")
        formats = ("arrow", "text") if args.trays == "both" else (args.trays,)
        results = {f: _Timings() for f in formats}
        sources = {
            f: ScrapeSource(
                config.trays,
                config.servers,
                name=config.name,
                timeout_s=0.9 * args.interval,
                down_after=config.down_after,
                tray_arrow=f == "arrow",
            )
            for f in formats
        }
        try:
            for tick in range(args.ticks + 1):
                w_tick = time.perf_counter()
                for f, source in sources.items():
                    results[f].poll(source, tick)
                time.sleep(max(0.0, args.interval - (time.perf_counter() - w_tick)))
            for f, source in sources.items():
                results[f].bad = [s.name for s in source.statuses() if s.state]
        finally:
            for source in sources.values():
                source.close()
    finally:
        ours.send("stop")
        child.join(timeout=10)
    print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"endpoints: {len(config.trays)} tray agents + {len(config.servers)} {args.engine} servers")
    for f, timed in results.items():
        timed.report(f"trays asked for {f}")


class _Timings:
    """CPU and wall time of one source's polls (the first, cold one apart)."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.mapping: list[float] = []
        """CPU of the polling thread alone (parsing and mapping); the rest of `cpu` is the HTTP loop's."""
        self.wall: list[float] = []
        self.first = 0.0
        self.rows: dict[str, int] = {}
        self.bad: list[str] = []

    def poll(self, source: ScrapeSource, tick: int) -> None:
        c0, w0, t0 = time.process_time(), time.perf_counter(), time.thread_time()
        frame = source.poll(int(time.time() * 1000))
        c1, w1, t1 = time.process_time(), time.perf_counter(), time.thread_time()
        if tick:  # the first tick fills the connection pool and the parser's series cache
            self.cpu.append((c1 - c0) * 1000)
            self.mapping.append((t1 - t0) * 1000)
            self.wall.append((w1 - w0) * 1000)
        else:
            self.first = (c1 - c0) * 1000
            self.rows = {name: batch.num_rows for name, batch in frame.batches.items()}

    def report(self, label: str) -> None:
        cpu = sorted(self.cpu)
        p90 = cpu[int(0.9 * (len(cpu) - 1))]
        print(f"{label}: rows {self.rows}")
        print(f"  first tick (cold connections and caches): {self.first:.1f} ms CPU")
        print(
            f"  CPU per tick over {len(cpu)} ticks: median {statistics.median(cpu):.1f} ms, p90 {p90:.1f} ms"
            f" (target <= {TARGET_CPU_MS:.0f} ms on one core)"
        )
        mapping = statistics.median(self.mapping)
        http = statistics.median(c - m for c, m in zip(self.cpu, self.mapping, strict=True))
        print(
            f"  of which the polling thread (parse, map, frame) {mapping:.1f} ms, the HTTP loop {http:.1f} ms"
        )
        print(f"  poll() wall time: median {statistics.median(self.wall):.1f} ms")
        if self.bad:
            print(f"  endpoints not OK at the end: {', '.join(self.bad)}")


if __name__ == "__main__":
    main()
