"""Parse + map cost of a full rack's scrape set per tick: 18 agent pages (4 GPUs x 18 links) + 72 vLLM pages.

Prints our figures (cold cache = first tick, warm = steady state) and prometheus_client's parser on the
same pages (parse only, no mapping). Run: .venv/bin/python bench/bench_parse.py [--ticks N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.mappings import GpuPageMapper, ServingRows, add_serving, frame_to_agent_page
from collectors.promtext import ExpositionParser
from collectors.rack import COMPUTE_TRAYS
from collectors.series_counters import SeriesCounters
from tests.scrape.pagegen import agent_gpus, tray_frame, vllm_page

ENDPOINTS = 72


def scrape_set(tick: int) -> tuple[list[str], list[str]]:
    """The pages one tick of a rack returns: values advance with the tick, series stay the same."""
    agents = [
        frame_to_agent_page(tray_frame(t, tick), agent_gpus(t), hostname=f"tray{t:02d}")
        for t in range(1, COMPUTE_TRAYS + 1)
    ]
    servers = [vllm_page(tick * 100 + e) for e in range(ENDPOINTS)]
    return agents, servers


def one_tick(
    agents: list[str],
    servers: list[str],
    mappers: list[GpuPageMapper],
    parsers: list[tuple[ExpositionParser, SeriesCounters]],
    ts_ms: int,
) -> float:
    """CPU seconds to parse and map the whole set into rack frames (one parser per server, as scrape does)."""
    start = time.process_time()
    for mapper, text in zip(mappers, agents, strict=True):
        mapper.map(text, ts_ms)
    rows = ServingRows()
    for e, (text, (parser, series)) in enumerate(zip(servers, parsers, strict=True)):
        add_serving(text, f"vllm-{e:02d}:8000", rows, engine="vllm", parser=parser, series=series)
    rows.frame(ts_ms)
    return time.process_time() - start


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=10, help="warm ticks to time (median printed)")
    ticks = parser.parse_args().ticks
    sets = [scrape_set(t) for t in range(ticks + 1)]
    agents, servers = sets[0]
    lines = sum(p.count("\n") for p in agents + servers)
    size = sum(len(p) for p in agents + servers)
    print(
        f"scrape set: {len(agents)} agent pages ({agents[0].count(chr(10))} lines each)"
        f" + {len(servers)} vLLM pages ({servers[0].count(chr(10))} lines each)"
        f" = {lines:,} lines, {size / 1e6:.1f} MB"
    )
    mappers = [GpuPageMapper(f"tray{t:02d}:9401") for t in range(1, COMPUTE_TRAYS + 1)]
    caches = ExpositionParser()
    parsers = [(caches.sibling(), SeriesCounters()) for _ in servers]  # as ScrapeSource keeps them
    cold = one_tick(agents, servers, mappers, parsers, 0)
    warm = [one_tick(a, s, mappers, parsers, i * 1000) for i, (a, s) in enumerate(sets[1:], 1)]
    agent_only = []
    for a, _ in sets[1:]:
        start = time.process_time()
        for mapper, text in zip(mappers, a, strict=True):
            mapper.map(text, 0)
        agent_only.append(time.process_time() - start)
    print(
        f"ours, parse + map into frames:   cold tick {cold * 1e3:6.1f} ms, warm tick median "
        f"{statistics.median(warm) * 1e3:6.1f} ms (agents {statistics.median(agent_only) * 1e3:.1f} ms)"
    )
    start = time.process_time()
    full = ExpositionParser(shapes=False)  # one parser over every page: the line loop alone
    for text in agents + servers:
        full.parse(text)
    full_cold = time.process_time() - start
    start = time.process_time()
    for text in sets[1][0] + sets[1][1]:
        full.parse(text)
    print(
        f"ours, full parse (no filter):    cold {full_cold * 1e3:6.1f} ms, warm "
        f"{(time.process_time() - start) * 1e3:6.1f} ms"
    )
    start = time.process_time()
    for text in agents + servers:
        for _ in text_string_to_metric_families(text):
            pass
    theirs = time.process_time() - start
    print(f"prometheus_client parser (parse only): {theirs * 1e3:6.1f} ms per tick")


if __name__ == "__main__":
    main()
