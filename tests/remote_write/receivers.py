"""Real remote-write receivers for the tests: Prometheus 2.42 and VictoriaMetrics 1.79 from Debian.

Built on bench/peers/servers.py's Server (its own process group, loopback only, stopped however the
`with` block ends); here each is started with its receiver on and a temporary data directory. A test
that needs one is skipped, with the reason, where the binary is missing (.ci/run installs both).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from bench.peers.servers import HOST, Server, free_port, victoria_metrics

PROMETHEUS = "prometheus"
VICTORIA = "victoria-metrics"


def need(binary: str) -> None:
    """Skip the calling test, saying why, when `binary` is not installed."""
    if shutil.which(binary) is None:
        package = "prometheus" if binary == PROMETHEUS else "victoria-metrics"
        pytest.skip(f"{binary} is not installed (apt-get install {package}; .ci/run does)")


def prometheus_receiver(work: Path) -> Server:
    """Prometheus with its remote-write receiver (/api/v1/write), no scrape targets, data in `work`."""
    need(PROMETHEUS)
    port = free_port()
    config = work / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    argv = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={work / 'prometheus-data'}",
        f"--web.listen-address={HOST}:{port}",
        "--web.enable-remote-write-receiver",
        "--log.level=warn",
    ]
    return Server("prometheus", argv, port, "/-/ready", work / "prometheus.log")


def victoria_receiver(work: Path) -> Server:
    """VictoriaMetrics single-node (its /api/v1/write), data in `work`."""
    need(VICTORIA)
    return victoria_metrics(work / "vm-data", work / "victoria-metrics.log")


def write_url(server: Server) -> str:
    """The server's remote-write URL (the same path on both)."""
    return f"http://{HOST}:{server.port}/api/v1/write"


def query(server: Server, promql: str, at_s: float) -> list[dict[str, Any]]:
    """An instant query's result vector or matrix (VictoriaMetrics flushed first, so it sees every row)."""
    if server.name == "victoria-metrics":
        server.request("GET", "/internal/force_flush")
    params = {"query": promql, "time": f"{at_s:.3f}"}
    if server.name == "victoria-metrics":
        params["nocache"] = "1"
    status, body = server.request("GET", "/api/v1/query?" + urllib.parse.urlencode(params))
    assert status == 200, body[:300]
    return json.loads(body)["data"]["result"]


def count_by_name(server: Server, selector: str, at_s: float, window_s: int) -> dict[str, int]:
    """Samples per metric name in the window ending at `at_s`, as the receiver stored them.

    One query per name: count_over_time drops the name, so Prometheus refuses a `by (__name__)` over it.
    """
    names = query_names(server, selector)
    counts: dict[str, int] = {}
    for name in names:
        inner = selector[:-1] + f',__name__="{name}"}}'
        rows = query(server, f"sum(count_over_time({inner}[{window_s}s]))", at_s)
        counts[name] = int(float(rows[0]["value"][1])) if rows else 0
    return counts


def query_names(server: Server, selector: str) -> list[str]:
    """The metric names of the series that match `selector`."""
    params = urllib.parse.urlencode({"match[]": selector})
    status, body = server.request("GET", f"/api/v1/label/__name__/values?{params}")
    assert status == 200, body[:300]
    return list(json.loads(body)["data"])


def settle(
    server: Server, selector: str, at_s: float, window_s: int, total: int, timeout_s: float = 60
) -> int:
    """Wait until the receiver shows `total` samples (VictoriaMetrics makes new rows searchable in
    about a second); return what it shows at the end."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = sum(count_by_name(server, selector, at_s, window_s).values())
        if seen >= total:
            return seen
        time.sleep(0.5)  # polling a child server's index: nothing to await
    return seen
