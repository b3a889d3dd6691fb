"""A rack's series from a query API, cut back into the pages they were scraped from, one set per tick.

The backend holds what each tray's exporter and each inference server printed, one series per sample line
of its page, plus the labels the backend added (job, instance, rack…). For a tick t, each series' newest
sample in (t - lookback, t] is the line it had on its page; grouping the lines by the tray host (the
`Hostname` label dcgm-exporter and `monitor agent` write) or by the server (its `instance`) gives back one
page per endpoint in the text format, and the scrape path's own parser and mappers turn those pages into
rows (collectors.scrape_endpoint.read_page). So a rack read from PromQL is mapped by the very code that
maps its scrapes: counters stay the raw counters, events come from the same state changes.

Histograms: the API has no TYPE lines, so a `x_bucket` series with an `le` label declares `x` a histogram
(its `x_sum` and `x_count` then join it, as on the page).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from collectors.mappings.gpu import READ_FAMILIES
from collectors.mappings.serving_engines import ENGINES
from collectors.promql_api import Series

PageKey = tuple[str, str]
"""("tray", host) or ("server", the server label's value)."""


def gpu_names() -> list[str]:
    """Every metric name a tray page's mapper reads (dcgm-exporter's and `monitor agent`'s)."""
    return sorted(READ_FAMILIES)


def serving_patterns(prefixes: Iterable[str] = ()) -> list[str]:
    """Regexes for every inference engine's metric names, `:` or `_` after each prefix word."""
    words = sorted({p for spec in ENGINES.values() for p in spec.prefixes} | {p + "_" for p in prefixes})
    return [re.sub(r"[_:]", "[_:]", w) + ".*" for w in words]


@dataclass
class _Timeline:
    """One series: its label text and its samples' timestamps and values, oldest first."""

    name: str
    labels: str
    stamps: list[int]
    values: list[str]


@dataclass
class RackSeries:
    """A query's series sorted into the rack's endpoints: the tray hosts and the configured servers."""

    hostname_label: str
    server_label: str
    servers: frozenset[str]
    """Values of the server label that name a configured [[server]]."""
    gpu_metrics: frozenset[str] = field(default_factory=lambda: frozenset(gpu_names()))
    _pages: dict[PageKey, list[_Timeline]] = field(default_factory=dict)
    _hists: dict[PageKey, set[str]] = field(default_factory=dict)

    def add(self, series: Iterable[Series]) -> None:
        """Sort each series under its endpoint (series of no endpoint of this rack are dropped)."""
        for labels, samples in series:
            name = labels.pop("__name__", "")
            key = self._key(name, labels)
            if key is None or not samples:
                continue
            if name.endswith("_bucket") and "le" in labels:
                self._hists.setdefault(key, set()).add(name[: -len("_bucket")])
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            stamps = [ts for ts, _ in samples]
            self._pages.setdefault(key, []).append(_Timeline(name, text, stamps, [v for _, v in samples]))

    def _key(self, name: str, labels: Mapping[str, str]) -> PageKey | None:
        if name in self.gpu_metrics:
            host = labels.get(self.hostname_label) or labels.get("hostname") or labels.get("instance")
            return None if host is None else ("tray", host)
        server = labels.get(self.server_label)
        return ("server", server) if server in self.servers else None

    def endpoint_keys(self) -> list[PageKey]:
        """Every endpoint with at least one series."""
        return sorted(self._pages)

    def pages_at(self, ts_ms: int, lookback_ms: int) -> dict[PageKey, str]:
        """Each endpoint's page at tick `ts_ms`: its series' newest samples in (ts - lookback, ts].

        An endpoint none of whose series has such a sample has no page (it missed the tick).
        """
        pages: dict[PageKey, str] = {}
        for key, timelines in self._pages.items():
            lines = [f"# TYPE {base} histogram" for base in sorted(self._hists.get(key, ()))]
            typed = len(lines)
            for line in timelines:
                at = bisect.bisect_right(line.stamps, ts_ms) - 1
                if at >= 0 and line.stamps[at] > ts_ms - lookback_ms:
                    lines.append(f"{line.name}{{{line.labels}}} {line.values[at]}")
            if len(lines) > typed:
                pages[key] = "\n".join(lines) + "\n"
        return pages


def _escape(value: str) -> str:
    """A label value in the text format (backslash, double quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def tick_grid(since_ms: int, until_ms: int, step_ms: int) -> Sequence[int]:
    """The ticks on the step grid in [since, until]."""
    first = -(-since_ms // step_ms) * step_ms
    return range(first, until_ms + 1, step_ms)
