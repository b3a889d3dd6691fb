"""The PromQL source's tick: queries, query time, answer bytes and our CPU per tick, for 1 and for N racks.

The simulated rack (18 tray agents, the sim's serving instances) is scraped for a few ticks; the pages are
loaded into VictoriaMetrics (and, for one rack, Prometheus) under `rack` labels r1..rN, as in
tests/promql (backends.py), and each rack's PromQLSource then polls every tick whose lookback window is
full. Printed per backend and rack count: queries per tick (all racks), the backend's answer time (HTTP,
wall), our CPU per rack tick (process_time: JSON decoding, cutting the series into pages, parse and map),
answer bytes per rack tick, and the load average (the machine is shared; wall times rise with it).

Run: .venv/bin/python bench/bench_promql.py [--racks 1,16] [--ticks 5] [--tp 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.clock import SimClock
from collectors.config import RackConfig
from collectors.config_promql import PromqlConfig
from collectors.promql_source import PromQLSource
from collectors.sim.http import SimServers
from collectors.sim.rack import SimRack
from tests.promql.backends import RecordingScrape, openmetrics, prometheus, victoria

ROOT = Path(__file__).resolve().parents[1]
LOOKBACK_S = 3.0


def capture(ticks: int, tp: int) -> tuple[RackConfig, list[int], list[tuple[int, dict[str, str]]]]:
    """The pages a scrape of the simulated rack read at `ticks` 1 s ticks, an hour in the past."""
    start = (int(time.time()) // 3600) * 3600 - 3600
    clock = SimClock(start)
    rack = SimRack(seed=0, clock=clock, tp=tp)
    pages = []
    with SimServers(rack) as servers:
        config = servers.config
        assert config is not None
        scrape = RecordingScrape(config.trays, config.servers, name="r1", timeout_s=60)
        try:
            for _ in range(ticks):
                clock.advance(1)
                scrape.pages = {}
                ts = round(clock.now() * 1000)
                scrape.poll(ts)
                pages.append((ts, dict(scrape.pages)))
        finally:
            scrape.close()
    return config, [ts for ts, _ in pages], pages


def measure(url: str, config: RackConfig, racks: int, ticks: list[int]) -> dict[str, float]:
    """Poll every rack's source at each tick with a full lookback window; medians per rack tick."""
    sources = [
        PromQLSource(
            dataclasses.replace(
                config, name=f"r{i}", promql=PromqlConfig(url, (("rack", f"r{i}"),), LOOKBACK_S)
            ),
            timeout_s=60,
        )
        for i in range(1, racks + 1)
    ]
    query_s, cpu_ms, wall_s, sizes, tick_wall = [], [], [], [], []
    for ts in ticks[int(LOOKBACK_S) - 1 :]:
        began = time.perf_counter()
        for source in sources:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            frame = source.poll(ts)
            cpu_ms.append((time.process_time() - cpu0) * 1000)
            wall_s.append(time.perf_counter() - wall0)
            answer = source.last_answer
            assert answer is not None and not answer.error, answer and answer.error
            assert frame.table("gpu").num_rows == 72
            query_s.append(answer.latency_s)
            sizes.append(answer.bytes)
        tick_wall.append(time.perf_counter() - began)
    polls = len(ticks[int(LOOKBACK_S) - 1 :])
    return {
        "queries_per_tick": sum(s.queries for s in sources) / polls,
        "query_s": statistics.median(query_s),
        "cpu_ms": statistics.median(cpu_ms),
        "poll_s": statistics.median(wall_s),
        "all_racks_tick_s": statistics.median(tick_wall),
        "mb": statistics.median(sizes) / 1e6,
    }


def import_rate(url: str, config: RackConfig, ticks: list[int], store: Path) -> float:
    """Ticks a second `monitor import` writes (history queries, mapping, alerts, the store writer)."""
    from monitor.commands.import_promql import import_window

    source = PromQLSource(
        dataclasses.replace(config, promql=PromqlConfig(url, (("rack", "r1"),), LOOKBACK_S)), timeout_s=60
    )
    began = time.perf_counter()
    written, _ = import_window(source, store, ticks[0], ticks[-1], 1000)
    return written / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--racks", default="1,16", help="rack counts to measure, e.g. 1,16")
    parser.add_argument(
        "--ticks", type=int, default=5, help="1 s ticks captured (the first 2 fill the lookback)"
    )
    parser.add_argument("--tp", type=int, default=1, help="tensor parallelism of the sim's serving instances")
    args = parser.parse_args()
    counts = [int(n) for n in args.racks.split(",")]
    config, ticks, pages = capture(args.ticks, args.tp)
    kinds = {t.url: "tray" for t in config.trays} | {s.url: "server" for s in config.servers}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    shape = f"{len(config.servers)} servers, {len(ticks)} ticks, lookback {LOOKBACK_S:g} s"
    print(f"commit {commit.stdout.strip()}, {shape}")
    for racks in counts:
        text = "".join(
            openmetrics(pages, f"r{i}", kinds).removesuffix("# EOF\n") for i in range(1, racks + 1)
        )
        backends = [("victoria-metrics", victoria)] + ([("prometheus", prometheus)] if racks == 1 else [])
        for name, start in backends:
            with tempfile.TemporaryDirectory() as tmp:
                loaded = time.perf_counter()
                with start(text + "# EOF\n", Path(tmp) / name) as url:
                    load_s = time.perf_counter() - loaded
                    load = os.getloadavg()[0]
                    got = measure(url, config, racks, ticks)
                    if racks == 1:
                        got["import_ticks_per_s"] = import_rate(url, config, ticks, Path(tmp) / "store")
            print(
                f"{name:16s} racks {racks:2d}: {got['queries_per_tick']:.0f} queries/tick, "
                f"answer {got['query_s'] * 1000:.0f} ms and {got['mb']:.1f} MB per rack, "
                f"our CPU {got['cpu_ms']:.0f} ms per rack, poll {got['poll_s'] * 1000:.0f} ms per rack, "
                f"all racks {got['all_racks_tick_s']:.2f} s per tick (sequential); "
                f"load {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
                f"(loading took {load_s:.0f} s)"
            )
            if "import_ticks_per_s" in got:
                print(f"{'':16s} monitor import of the same ticks: {got['import_ticks_per_s']:.1f} ticks/s")


if __name__ == "__main__":
    main()
