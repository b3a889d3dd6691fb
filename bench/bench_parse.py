"""Parse cost, cold and warm, per MB, against prometheus_client; and a rack's scrape set per tick.

Part 1, per page (CPU time, median of --repeat runs, MB = 10^6 bytes of page text):
  cold: a fresh ExpositionParser per parse (the first scrape of an endpoint: nothing cached);
  warm: the endpoint's parser again, on the next page of the same series (values changed where the
        page is ours; Prometheus' testdata pages are parsed again as they are);
  prometheus_client: list(text_string_to_metric_families(page)), which keeps no state.
Pages: our own (a vLLM server page, an agent tray page) and, with --testdata DIR, every *.prom.txt
there: Prometheus' model/textparse/testdata pages, kept out of this repository; fetch them first, e.g.
  git -C PROMETHEUS_CLONE show d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86:model/textparse/testdata/\\
      alltypes.237mfs.prom.txt > DIR/alltypes.237mfs.prom.txt   (and alltypes.237mfs.nometa.prom.txt)
  (v2.42.0 has model/textparse/promtestdata.txt and promtestdata.nometa.txt instead.)

Part 2, a full rack's scrape set per tick: 18 agent pages (4 GPUs x 18 links) + 72 vLLM pages, parse +
map into frames, cold (first tick) and warm (median of --ticks).

Run: .venv/bin/python bench/bench_parse.py [--testdata DIR] [--repeat N] [--ticks N]
The load average is printed with the figures: the machine these ran on is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.mappings import GpuPageMapper, ServingRows, add_serving, frame_to_agent_page
from collectors.promtext import ExpositionParser
from collectors.rack import COMPUTE_TRAYS
from collectors.series_counters import SeriesCounters
from tests.scrape.pagegen import agent_gpus, tray_frame, vllm_page

ENDPOINTS = 72


def cpu_ms(run: Callable[[], object], repeat: int) -> float:
    """Median CPU milliseconds of `repeat` runs."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def page_figures(name: str, first: str, later: str, repeat: int) -> None:
    """Print cold, warm and prometheus_client figures for one page (`later`: its next scrape)."""
    size_mb = len(first.encode()) / 1e6
    cold = cpu_ms(lambda: ExpositionParser().parse(first), repeat)
    kept = ExpositionParser()
    kept.parse(first)
    pages = [later, first]

    def warm_parse() -> None:
        kept.parse(pages[0])
        pages.reverse()

    warm = cpu_ms(warm_parse, repeat)
    theirs = cpu_ms(lambda: list(text_string_to_metric_families(first)), repeat)
    print(
        f"{name:<34} {size_mb * 1e3:8.1f} kB {first.count(chr(10)):7,d} lines | "
        f"cold {cold:7.2f} ms {size_mb / cold * 1e3:6.1f} MB/s | "
        f"warm {warm:7.2f} ms {size_mb / warm * 1e3:6.1f} MB/s | "
        f"prometheus_client {theirs:7.2f} ms {size_mb / theirs * 1e3:5.1f} MB/s | "
        f"x{theirs / cold:4.1f} cold, x{theirs / warm:5.1f} warm"
    )


def pages_part(testdata: Path | None, repeat: int) -> None:
    """Part 1 (see the module doc)."""
    print(f"per page, CPU median of {repeat}:")
    page_figures("vLLM server page (ours)", vllm_page(0), vllm_page(1), repeat)
    agent = [frame_to_agent_page(tray_frame(3, tick), agent_gpus(3), hostname="tray03") for tick in (0, 1)]
    page_figures("agent tray page (ours)", agent[0], agent[1], repeat)
    if testdata is None:
        print("(no --testdata DIR: Prometheus' testdata pages not measured)")
        return
    files = sorted(testdata.glob("*.prom.txt")) + sorted(testdata.glob("promtestdata*.txt"))
    if not files:
        sys.exit(f"bench_parse: no *.prom.txt or promtestdata*.txt in {testdata}")
    for path in files:
        text = path.read_text()
        page_figures(f"{path.name} (Prometheus)", text, text, repeat)


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


def rack_part(ticks: int) -> None:
    """Part 2 (see the module doc)."""
    sets = [scrape_set(t) for t in range(ticks + 1)]
    agents, servers = sets[0]
    size = sum(len(p) for p in agents + servers)
    print(
        f"rack scrape set: {len(agents)} agent pages + {len(servers)} vLLM pages"
        f" = {sum(p.count(chr(10)) for p in agents + servers):,} lines, {size / 1e6:.1f} MB"
    )
    mappers = [GpuPageMapper(f"tray{t:02d}:9401") for t in range(1, COMPUTE_TRAYS + 1)]
    caches = ExpositionParser()
    parsers = [(caches.sibling(), SeriesCounters()) for _ in servers]  # as ScrapeSource keeps them
    cold = one_tick(agents, servers, mappers, parsers, 0)
    warm = statistics.median(
        one_tick(a, s, mappers, parsers, i * 1000) for i, (a, s) in enumerate(sets[1:], 1)
    )
    print(
        f"ours, parse + map into frames: cold tick {cold * 1e3:6.1f} ms,"
        f" warm tick median {warm * 1e3:6.1f} ms"
    )
    start = time.process_time()
    for text in agents + servers:
        list(text_string_to_metric_families(text))
    theirs = time.process_time() - start
    print(f"prometheus_client parser (parse only, no mapping): {theirs * 1e3:6.1f} ms per tick")


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--testdata", type=Path, help="a directory holding Prometheus' testdata pages")
    parser.add_argument("--repeat", type=int, default=15, help="runs per page figure (median printed)")
    parser.add_argument("--ticks", type=int, default=10, help="warm rack ticks to time (median printed)")
    args = parser.parse_args()
    if args.testdata is not None and not args.testdata.is_dir():
        sys.exit(f"bench_parse: --testdata {args.testdata} is not a directory")
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    pages_part(args.testdata, args.repeat)
    rack_part(args.ticks)
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
