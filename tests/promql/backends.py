"""Real Prometheus 2.42 and VictoriaMetrics 1.79 on loopback, loaded with pages a scrape source really read.

The servers are started by tests/peer_servers.py (loopback only, their own process group, stopped however
the test ends). The pages are the exact texts a ScrapeSource fetched over HTTP from the simulator
(RecordingScrape keeps them), written into one OpenMetrics file with the tick's timestamp on every sample
and the labels a Prometheus scrape would add (job, instance, rack): promtool turns it into blocks for
Prometheus, VictoriaMetrics imports it on /api/v1/import/prometheus. The rewriting is plain text work
written here, independent of the code under test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from collectors.scrape import ScrapeSource
from collectors.scrape_http import Fetched
from tests.peer_servers import prometheus_over_blocks, victoria_metrics

BINARIES = ("prometheus", "promtool", "victoria-metrics")
needs_backends = pytest.mark.skipif(
    not all(shutil.which(b) for b in BINARIES),
    reason="Debian's prometheus (with promtool) and victoria-metrics are not installed "
    "(apt-get install prometheus victoria-metrics; .ci/run installs them)",
)


class RecordingScrape(ScrapeSource):
    """A ScrapeSource that keeps the text of every page it fetched, by URL, for the tick being polled."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        # It keeps text pages for the backends to read: the trays are asked for text, not Arrow.
        super().__init__(*args, tray_arrow=False, **kwargs)  # type: ignore[arg-type]
        self.pages: dict[str, str] = {}

    async def fetch(self, url: str, accept: str | None = None) -> Fetched:
        got = await super().fetch(url, accept)
        if got.text is not None:
            self.pages[url] = got.text
        return got


def labelled(line: str, extra: str) -> str:
    """A sample line `name{labels} value` with `extra` (a="b",c="d") added to its labels."""
    head, _, value = line.rpartition(" ")
    if head.endswith("}"):
        inside = head[head.index("{") + 1 : -1].rstrip(",")
        name = head[: head.index("{")]
        head = f"{name}{{{inside},{extra}}}" if inside else f"{name}{{{extra}}}"
    else:
        head = f"{head}{{{extra}}}"
    return f"{head} {value}"


def openmetrics(ticks: list[tuple[int, dict[str, str]]], rack: str, kinds: dict[str, str]) -> str:
    """Every page of every tick as OpenMetrics samples (timestamps in seconds), comments dropped.

    `kinds` maps a page's URL to its job ("tray" or "server"); instance is the URL's host:port, as a
    Prometheus scrape of that URL would label it. Series stay contiguous and in time order.
    """
    series: dict[str, list[str]] = {}
    for ts_ms, pages in ticks:
        for url, text in pages.items():
            parts = urlsplit(url)
            extra = f'instance="{parts.hostname}:{parts.port}",job="{kinds[url]}",rack="{rack}"'
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    sample = labelled(line, extra)
                    head, _, value = sample.rpartition(" ")
                    series.setdefault(head, []).append(f"{head} {value} {ts_ms / 1000:.3f}")
    return "\n".join(line for lines in series.values() for line in lines) + "\n# EOF\n"


@contextmanager
def victoria(om_text: str, tmp: Path) -> Iterator[str]:
    """VictoriaMetrics holding `om_text`; yields its base URL."""
    tmp.mkdir(parents=True, exist_ok=True)
    with victoria_metrics(tmp / "vm", tmp / "vm.log") as vm:
        status, body = vm.request("POST", "/api/v1/import/prometheus", body=om_text.encode())
        assert status in (200, 204), body[:300]
        status, body = vm.request("GET", "/internal/force_flush")
        assert status == 200, body[:300]
        yield f"http://127.0.0.1:{vm.port}"


@contextmanager
def prometheus(om_text: str, tmp: Path) -> Iterator[str]:
    """Prometheus over blocks promtool made from `om_text`; yields its base URL."""
    import subprocess

    tmp.mkdir(parents=True, exist_ok=True)
    source = tmp / "prom.om"
    source.write_text(om_text)
    data = tmp / "prom"
    data.mkdir(parents=True)
    out = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-500:]
    with prometheus_over_blocks(data, tmp / "prom.log", max_samples=50_000_000) as prom:
        yield f"http://127.0.0.1:{prom.port}"
