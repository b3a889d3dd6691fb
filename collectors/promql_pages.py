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

from collectors.mappings.gpu_values import READ_FAMILIES
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


_Timeline = tuple[str, str, Sequence[float], Sequence[float | str]]
"""One series: its name, its label text, its samples' timestamps (s) and values, oldest first."""
_Described = tuple[PageKey | None, str, str, str | None]
"""What a label set means: (its endpoint or None, its name, its label text, its histogram's name or None)."""
SeriesCache = dict[tuple[str, ...], _Described]
"""Label sets already described, kept by the source from tick to tick (its series repeat every tick)."""
CACHE_LIMIT = 1 << 20


@dataclass
class RackSeries:
    """A query's series sorted into the rack's endpoints: the tray hosts and the configured servers."""

    hostname_label: str
    server_label: str
    servers: frozenset[str]
    """Values of the server label that name a configured [[server]]."""
    cache: SeriesCache = field(default_factory=dict)
    gpu_metrics: frozenset[str] = field(default_factory=lambda: frozenset(gpu_names()))
    _pages: dict[PageKey, list[_Timeline]] = field(default_factory=dict)
    _hists: dict[PageKey, set[str]] = field(default_factory=dict)

    def add(self, series: list[Series]) -> None:
        """Sort each series under its endpoint (series of no endpoint of this rack are dropped).

        A label set is described once and then found in `cache` by its names and values (the JSON
        decoder shares the name strings, so the key is cheap); ~20 k series a tick make this the hot loop.
        """
        host_of: dict[str, str] | None = None
        if len(self.cache) > CACHE_LIMIT:
            self.cache.clear()
        for labels, samples in series:
            if not samples:
                continue
            ident = (*labels, *labels.values())
            known = self.cache.get(ident)
            if known is None:
                host_of = self._hosts(series) if host_of is None else host_of
                known = self.cache[ident] = self._describe(labels, host_of)
            key, name, text, hist = known
            if key is None:
                continue
            if hist is not None:
                self._hists.setdefault(key, set()).add(hist)
            stamps, values = zip(*samples, strict=True)
            self._pages.setdefault(key, []).append((name, text, stamps, values))

    def _hosts(self, series: list[Series]) -> dict[str, str]:
        """UUID -> host: per-link series carry only gpu, UUID and link (as on the agent's page), so a GPU's
        host is learnt from the series that name both."""
        host_of: dict[str, str] = {}
        for labels, _ in series:
            host = labels.get(self.hostname_label) or labels.get("hostname")
            uuid = labels.get("UUID") or labels.get("uuid")
            if host and uuid:
                host_of.setdefault(uuid, host)
        return host_of

    def _describe(self, labels: Mapping[str, str], host_of: Mapping[str, str]) -> _Described:
        name = labels.get("__name__", "")
        rest = {k: v for k, v in labels.items() if k != "__name__"}
        key = self._key(name, rest, host_of)
        hist = name[: -len("_bucket")] if name.endswith("_bucket") and "le" in rest else None
        return key, name, ",".join([f'{k}="{_escape(v)}"' for k, v in rest.items()]), hist

    def _key(self, name: str, labels: Mapping[str, str], host_of: Mapping[str, str]) -> PageKey | None:
        if name in self.gpu_metrics:
            uuid = labels.get("UUID") or labels.get("uuid") or ""
            host = (
                labels.get(self.hostname_label)
                or labels.get("hostname")
                or host_of.get(uuid)
                or labels.get("instance")
            )
            return None if host is None else ("tray", host)
        server = labels.get(self.server_label)
        return ("server", server) if server in self.servers else None

    def endpoint_keys(self) -> list[PageKey]:
        """Every endpoint with at least one series."""
        return sorted(self._pages)

    def pages_at(self, ts_ms: int, lookback_ms: int) -> dict[PageKey, str]:
        """Each endpoint's newest page at tick `ts_ms`, as it was scraped.

        A scrape stamps every sample of a page with one time, so an endpoint's newest page is its series
        that have a sample at its newest time in (ts - lookback, ts]. A series the page no longer printed
        (a lost GPU's links) has no sample then and is left out, as the scrape left it out; the backend's
        staleness markers are not needed (range selectors do not return them). An endpoint with no sample
        in the window has no page (it missed the tick).
        """
        pages: dict[PageKey, str] = {}
        # The API's timestamps are seconds as JSON numbers; ts / 1000 is the same double as "ts/1000" parsed.
        end, low = ts_ms / 1000, (ts_ms - lookback_ms) / 1000
        for key, timelines in self._pages.items():
            newest: list[tuple[float, _Timeline, int]] = []
            for line in timelines:
                stamps = line[2]
                at = bisect.bisect_right(stamps, end) - 1
                if at >= 0 and stamps[at] > low:
                    newest.append((stamps[at], line, at))
            if not newest:
                continue
            scraped = max(stamp for stamp, _, _ in newest)
            lines = [f"# TYPE {base} histogram" for base in sorted(self._hists.get(key, ()))]
            lines += [f"{line[0]}{{{line[1]}}} {line[3][at]}" for s, line, at in newest if s == scraped]
            pages[key] = "\n".join(lines) + "\n"
        return pages


def _escape(value: str) -> str:
    """A label value in the text format (backslash, double quote and newline escaped)."""
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def tick_grid(since_ms: int, until_ms: int, step_ms: int) -> Sequence[int]:
    """The ticks on the step grid in [since, until]."""
    first = -(-since_ms // step_ms) * step_ms
    return range(first, until_ms + 1, step_ms)
