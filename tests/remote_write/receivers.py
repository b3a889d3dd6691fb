"""Reading real remote-write receivers back in the tests: queries, counts by name, settling.

The receivers themselves (Prometheus 2.42 with its receiver on, VictoriaMetrics 1.79) are started by
tests/peer_servers.py, the one starter module of the tests.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from tests.peer_servers import Server


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
