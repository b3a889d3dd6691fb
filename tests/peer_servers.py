"""The one place tests start real Prometheus 2.42 and VictoriaMetrics 1.79 (Debian's packages).

Every server here is a bench/peers/servers.py `Server` (imported as `bench.peers.servers`, the only
way anything under tests/ imports it): its own process group on 127.0.0.1, a temporary data
directory, ready when it answers, and stopped with its whole group however the `with` block ends (a
failed assert, an error, Ctrl-C); SIGTERM first, SIGKILL after 30 s. A test that needs a binary that
is missing is skipped with the reason (.ci/run installs both packages).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.peers.servers import HOST, BenchError, Server, free_port, prometheus, victoria_metrics

__all__ = [
    "HOST",
    "BenchError",
    "Server",
    "free_port",
    "need",
    "prometheus_over_blocks",
    "prometheus_receiver",
    "prometheus_scraping",
    "victoria_metrics",
    "victoria_receiver",
    "write_url",
]

PROMETHEUS = "prometheus"
VICTORIA = "victoria-metrics"
_PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus", "victoria-metrics": "victoria-metrics"}


def need(*binaries: str) -> None:
    """Skip the calling test, saying why, when one of `binaries` is not installed."""
    for binary in binaries:
        if shutil.which(binary) is None:
            package = _PACKAGES.get(binary, binary)
            pytest.skip(f"{binary} is not installed (apt-get install {package}; .ci/run does)")


def prometheus_receiver(work: Path) -> Server:
    """Prometheus with its remote-write receiver (/api/v1/write), no scrape targets, data in `work`."""
    need(PROMETHEUS)
    config = work / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    return _prometheus(work, config, "--web.enable-remote-write-receiver", "--log.level=warn")


def prometheus_scraping(work: Path, scrape_configs_yaml: str, interval_s: float = 1.0) -> Server:
    """Prometheus scraping the jobs of `scrape_configs_yaml` (the list under scrape_configs:) every
    `interval_s`, data in `work`."""
    need(PROMETHEUS)
    config = work / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {interval_s:g}s, scrape_timeout: {interval_s:g}s}}\n"
        f"scrape_configs:\n{scrape_configs_yaml}"
    )
    return _prometheus(work, config, "--log.level=warn")


def _prometheus(work: Path, config: Path, *flags: str) -> Server:
    port = free_port()
    argv = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={work / 'prometheus-data'}",
        f"--web.listen-address={HOST}:{port}",
        *flags,
    ]
    return Server("prometheus", argv, port, "/-/ready", work / "prometheus.log")


def prometheus_over_blocks(data_dir: Path, log_path: Path, *, max_samples: int) -> Server:
    """Prometheus over TSDB blocks already in `data_dir` (promtool made them), no scrape targets."""
    need(PROMETHEUS)
    return prometheus(data_dir, log_path, max_samples=max_samples)


def victoria_receiver(work: Path) -> Server:
    """VictoriaMetrics single-node (its /api/v1/write and import APIs), data in `work`."""
    need(VICTORIA)
    return victoria_metrics(work / "vm-data", work / "victoria-metrics.log")


def write_url(server: Server) -> str:
    """The server's remote-write URL (the same path on both)."""
    return f"http://{HOST}:{server.port}/api/v1/write"
