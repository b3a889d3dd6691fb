"""bench_fleet.py's VictoriaMetrics side: its scrape config, its CPU and scrape counters, the query rounds.

Kept apart so bench_fleet.py stays one screen of what it runs; see bench_fleet.py for the command.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import tracemalloc
import urllib.request
from collections import Counter
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit


def scrape_config(configs, path: Path) -> None:
    """VictoriaMetrics' -promscrape.config: every tray and server page of every rack at 1 Hz, each target
    labelled with its rack (and a server with its name: the simulated servers share one host:port)."""
    jobs = []
    for kind in ("tray", "server"):
        static = []
        for config in configs:
            targets = config.trays if kind == "tray" else config.servers
            for t in targets:
                url = urlsplit(t.url)
                labels = {"rack": config.name, "__metrics_path__": url.path}
                if kind == "server":
                    labels["server"] = t.name
                static.append({"targets": [url.netloc], "labels": labels})
        jobs.append({"job_name": kind, "scrape_interval": "1s", "scrape_timeout": "1s",
                     "static_configs": static})  # fmt: skip
    path.write_text(json.dumps({"scrape_configs": jobs}))  # YAML is a superset of JSON


def peer_servers() -> ModuleType:
    """bench/peers/servers.py (Server, free_port, HOST): the one starter the tests use too."""
    from bench.peers import servers

    return servers


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of another process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class QueryMeter:
    """Per round of a QueriedFleet's queries: how many, the slowest answer, bytes, our CPU (its thread)."""

    def __init__(self, fleet) -> None:
        self.rounds: list = []
        poll = fleet.poll

        def timed(ts_ms: int) -> None:
            poll(ts_ms)
            self.rounds.append(fleet.queries.last_cost)

        fleet.poll = timed


def rows_text(rows: list) -> str:
    """'14 ok, 1 warn, 1 CRIT, 0 waiting; 1,151/1,152 GPUs ok'."""
    health = Counter(r.health.name for r in rows)
    errors = sum(1 for r in rows if r.error)
    text = ", ".join(f"{health.get(h, 0)} {h.lower()}" for h in ("OK", "WARNING", "CRITICAL", "WAITING"))
    gpus = f"{sum(r.gpus_ok for r in rows):,}/{sum(r.gpus for r in rows):,} GPUs ok"
    return f"{text}; {gpus}" + (f"; {errors} rows with a failed query" if errors else "")


def port_of(fleet) -> int:
    """The VictoriaMetrics port the fleet's queries go to."""
    return urlsplit(fleet.queries.plan.url).port or 0


def vm_scrapes(pid: int, port: int) -> str:
    """VictoriaMetrics' own scrape counters so far: scrapes done, failed, timed out."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        name = series.partition("{")[0]  # some carry labels: sum the family's series
        if name in ("vm_promscrape_scrapes_total", "vm_promscrape_scrapes_failed_total",
                    "vm_promscrape_scrapes_timed_out_total"):  # fmt: skip
            found[name] = found.get(name, 0.0) + float(value)
    return (
        f"VictoriaMetrics scrapes so far: {found.get('vm_promscrape_scrapes_total', 0):,.0f}, failed "
        f"{found.get('vm_promscrape_scrapes_failed_total', 0):,.0f}, timed out "
        f"{found.get('vm_promscrape_scrapes_timed_out_total', 0):,.0f}"
    )


def query_lines(rounds: list, wall: float, rest_pct: float, vm_pct: float) -> list[str]:
    """The query figures of a --source vm run."""
    if not rounds:
        return ["  no query rounds within the run"]
    answer_ms = sorted(r.answer_s * 1e3 for r in rounds)
    cpu_ms = sorted(r.cpu_s * 1e3 for r in rounds)
    return [
        f"    fleet queries + rows (the query thread and the rest): {rest_pct:.1f} %",
        f"  per tick: {statistics.median(r.queries for r in rounds):.0f} queries for the whole fleet "
        f"({min(r.queries for r in rounds)}-{max(r.queries for r in rounds)}); "
        f"{len(rounds) / wall:.2f} rounds/s; "
        f"answer (slowest query) median {statistics.median(answer_ms):.0f} ms, p90 "
        f"{answer_ms[int(len(answer_ms) * 0.9)]:.0f} ms; our CPU median {statistics.median(cpu_ms):.1f} ms "
        f"a round; {statistics.median(r.bytes for r in rounds) / 1e3:.1f} kB of answers",
        f"  VictoriaMetrics (scraping every page at 1 Hz, answering): {vm_pct:.0f} % of one core",
    ]


def queried_row_bytes(fleet) -> int:
    """Python memory one round of queries keeps per rack (its figures' rows), by tracemalloc."""
    rows = [r.row for r in fleet.racks]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    copies = [copy.deepcopy(r) for r in rows if r is not None]  # what one row holds, traced
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return kept // max(len(copies), 1)
