"""report.html: one self-contained page (inline SVG and CSS, no script, no network) summarising a window.

Per-GPU heatmaps over time for the main metrics, rack timelines (tokens/s, power, NVLink traffic and
errors) with events and each suspect's onset as markers on the time axis, and the summary `monitor
report` prints. The charts themselves are drawn by monitor.report_charts.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from monitor.report import EmptyReportError, Summary, summarize
from monitor.report_charts import HEATMAPS, Axis, Point, esc, heatmap, heatmap_grids, timeline
from monitor.report_nvlink import (
    DIRECTIONS,
    coarsened,
    epoch_ms_list,
    link_increases,
    of_counters,
    rack_total,
    rates_by_step,
)
from monitor.report_text import render_markdown_lines
from monitor.timespec import Window, iso
from storage import counter_rates
from storage.rack_total import power_ticks_sql
from storage.reader import StoreReader
from storage.schemas import SORT_KEYS

TIMELINES = (
    ("tokens", "Generated tokens/s", "tok/s"),
    ("power", "Rack GPU power", "kW"),
    ("nvlink", "NVLink traffic (TX+RX)", "TB/s"),
    ("errors", "NVLink errors", "per s"),
)
"""The rack timelines, top to bottom: (series key, title, unit)."""
ERROR_COUNTERS = ("symbol_errors", "rx_errors", "recovery_failed")
"""The NVLink error counters the errors timeline sums (`recovery` counts retrains that succeeded)."""
CSS = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
svg{display:block;margin:.4em 0}text{font:11px monospace;fill:#333}.muted{color:#777}"""


def _series(
    reader: StoreReader, window: Window, axis: Axis, links: pa.Table, errors: pa.Table
) -> dict[str, list[Point]]:
    """Rack-wide values per time bucket: tokens/s, kW, NVLink TB/s and link errors per second.

    links, errors: the window's NVLink traffic and ERROR_COUNTERS increases per step of axis.link_step_ms
    (report_nvlink.link_increases).
    """
    tokens = reader.rates(
        "serving", ("generation_tokens",), window.since_ms, window.until_ms, step_ms=axis.step_ms
    )
    return {
        "tokens": _stepped(reader, window, axis, "serving", tokens, 1.0, "endpoints"),
        "power": _power(reader, window, axis),
        "nvlink": _nvlink(reader, window, axis, links),
        "errors": _stepped(reader, window, axis, "nvlink", errors, 1.0, "links", axis.link_step_ms),
    }


def _stepped(
    reader: StoreReader,
    window: Window,
    axis: Axis,
    table: str,
    rated: pa.Table,
    scale: float,
    what: str,
    step_ms: int | None = None,
) -> list[Point]:
    """Per step (of step_ms, default the axis step), the sum of every series' rate in `rated` (StoreReader.
    rates of `table`'s counters per step: storage.increase's rule, per column), with coverage.

    A step where fewer series had a rate than the window holds is a partial point (marked, not a dip).
    """
    keys = SORT_KEYS[table]
    of = series_in(reader, table, window)
    rated = rated.select([*keys, "ts", "rate"])
    # Summed and counted in Arrow, not a Python loop: the NVLink errors are 3 counters x 1,296 links
    # per step. A series is covered at a step where any of the columns has a finite rate there.
    finite = rated.filter(pc.is_finite(rated.column("rate")))
    sums = finite.group_by("ts", use_threads=False).aggregate([("rate", "sum")])
    covered = (
        finite.group_by(["ts", *keys], use_threads=False)
        .aggregate([])
        .group_by("ts", use_threads=False)
        .aggregate([("ts", "count")])
    )
    count_at = dict(
        zip(epoch_ms_list(covered.column("ts")), covered.column("ts_count").to_pylist(), strict=True)
    )
    out: list[Point] = []
    starts = epoch_ms_list(sums.column("ts"))
    for start, total in sorted(zip(starts, sums.column("rate_sum").to_pylist(), strict=True)):
        n = count_at[start]
        out.append((axis.mid(start, step_ms), total * scale, None if n >= of else f"{n}/{of} {what}"))
    return out


def _link_steps(
    reader: StoreReader,
    window: Window,
    links: pa.Table,
    early: Axis,
    axis: Axis,
    counters: Sequence[str] = (),
) -> pa.Table:
    """The NVLink increases per step of axis.link_step_ms, from `links` (per step of early's) where
    its steps are unions of those (coarsened: exact), read again otherwise: of the traffic counters, or
    of `counters` instead where given."""
    if axis.link_step_ms == early.link_step_ms:
        return links
    if axis.link_step_ms % early.link_step_ms == 0:
        return coarsened(links, axis.link_step_ms)
    if counters:
        return reader.rates("nvlink", counters, window.since_ms, window.until_ms, step_ms=axis.link_step_ms)
    return link_increases(reader, window.since_ms, window.until_ms, axis.link_step_ms)


def series_in(reader: StoreReader, table: str, window: Window) -> int:
    """Series of `table` with a row in the window: what a rack total over them is out of.

    Whole compacted minutes and hours are read from the rollups (a bucket row per series that had a
    row in it), raw rows only where no bucket fits: the NVLink table holds 1,296 series a second.
    """
    keys = ", ".join(SORT_KEYS[table])
    spans = counter_rates.span_relations(
        reader.relation, reader.manifest, table, window.since_ms, window.until_ms
    )
    union = " UNION ALL ".join(f"SELECT {keys} FROM {rel}" for _, rel in spans)
    return reader.sql(f"SELECT count(DISTINCT ({keys})) FROM ({union})").column(0)[0].as_py() or 0


def _nvlink(reader: StoreReader, window: Window, axis: Axis, links: pa.Table) -> list[Point]:
    """Rack NVLink TX+RX TB/s per step of `links` (axis.link_step_ms), by the header's rule
    (monitor.report_nvlink).

    A step whose sum covers fewer GPUs than the window holds, or leaves implausible links out, is a
    partial point that says so (marked, not a dip).
    """
    of = _gpus_in(reader, window)
    out: list[Point] = []
    for start, rates in rates_by_step(links, window.since_ms, window.until_ms, axis.link_step_ms).items():
        total = rack_total(rates, of)
        if total.total.value is None:
            continue
        what = None
        if not total.total.whole or total.implausible:
            what = total.total.coverage("GPUs")
            if total.implausible:
                what += f", {total.implausible} links implausible, left out"
        out.append((axis.mid(start, axis.link_step_ms), total.total.value, what))
    return out


def _gpus_in(reader: StoreReader, window: Window) -> int:
    """GPUs with a row in the window: what a rack total over GPUs is out of."""
    rel = reader.relation("gpu", window.since_ms, window.until_ms)
    return reader.sql(f"SELECT count(DISTINCT gpu) FROM {rel}").column(0)[0].as_py() or 0


def _power(reader: StoreReader, window: Window, axis: Axis) -> list[Point]:
    """Rack kW per bucket: the mean of its whole ticks; a bucket without any is a partial point."""
    rel = reader.relation("gpu", window.since_ms, window.until_ms)
    of = _gpus_in(reader, window)
    # Per bucket in SQL (a day is 86,400 ticks): the mean of the whole ticks, else of every tick and
    # the fewest GPUs one covered.
    buckets = reader.rows(
        f"SELECT {axis.bucket_sql()} AS b, avg(kw) FILTER (WHERE covered >= {of}), avg(kw), min(covered) "
        f"FROM ({power_ticks_sql(rel)}) WHERE kw IS NOT NULL GROUP BY b ORDER BY b"
    )
    out: list[Point] = []
    for b, whole, every, least in buckets:
        mid = axis.mid(axis.first + b * axis.step_ms)
        if whole is not None:
            out.append((mid, whole, None))
        else:
            out.append((mid, every, f"{least}/{of} GPUs"))
    return out


def _data_range(reader: StoreReader, window: Window) -> tuple[int, int]:
    """The first and last sample time inside the window over the tables the charts draw."""
    spans = [
        reader.sql(f"SELECT epoch_ms(min(ts)), epoch_ms(max(ts)) FROM {rel}").to_pylist()[0].values()
        for rel in (reader.relation(t, window.since_ms, window.until_ms) for t in ("gpu", "serving"))
    ]
    known = [tuple(s) for s in spans if None not in s]
    if not known:
        return window.since_ms, window.until_ms
    return min(int(lo) for lo, _ in known), max(int(hi) for _, hi in known)


def render_report(reader: StoreReader, window: Window, *, title: str = "rack") -> str:
    """The whole report.html for `window` of the store behind `reader`."""
    head = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>rack-monitor report: '
        f"{esc(title)}</title><style>{CSS}</style></head><body>"
    )
    rel = reader.relation("events", window.since_ms, window.until_ms)
    events = reader.sql(
        f"SELECT epoch_ms(ts) AS ms, kind, gpu, code, detail FROM {rel} WHERE kind <> 'clocks_event' "
        "ORDER BY ts LIMIT 500"
    ).to_pylist()
    first, last = _data_range(reader, window)
    # The time axis spans the events and suspects' onsets drawn too: one recorded before the first
    # sample or after the last (a collector stopping; a link's onset, from the nvlink table) would
    # otherwise be a marker outside its chart. The NVLink timeline's steps are rated before the
    # summary, which sums its NVLink total from them (the window's raw link rows are read once): on
    # the axis of the events alone, which a suspect's onset rarely widens (see _link_steps).
    marked = [e["ms"] for e in events]
    early = Axis(min([first, *marked]), max([last, *marked]))
    rated = link_increases(reader, window.since_ms, window.until_ms, early.link_step_ms, also=ERROR_COUNTERS)
    links = of_counters(rated, DIRECTIONS)
    try:
        summary = summarize(reader, window, nvlink_steps=links)
    except EmptyReportError as err:
        return f"{head}<h1>rack-monitor report: {esc(title)}</h1><p>{esc(err)}</p></body></html>\n"
    marked += [s["onset_ms"] for s in summary["suspects"] if s["onset_ms"] is not None]
    axis = Axis(min([first, *marked]), max([last, *marked]))
    errors = _link_steps(reader, window, of_counters(rated, ERROR_COUNTERS), early, axis, ERROR_COUNTERS)
    series = _series(reader, window, axis, _link_steps(reader, window, links, early, axis), errors)
    body = [f"<h1>rack-monitor report: {esc(title)}</h1>"]
    body.append(_summary_html(summary))
    body.append("<h2>Rack timelines</h2>")
    for key, name, unit in TIMELINES:
        body.append(timeline(axis, series[key], name, unit, events, summary["suspects"]))
    body.append("<h2>Per GPU over time</h2>")
    for (_, name, unit), grid in zip(HEATMAPS, heatmap_grids(reader, window, axis), strict=True):
        body.append(heatmap(axis, grid, name, unit))
    body.append("<h2>Events</h2>")
    if events:
        rows = "".join(
            f"<tr><td>{esc(iso(e['ms']))}</td><td>{esc(e['kind'])}</td><td>{esc(e['gpu'])}</td>"
            f"<td>{esc(e['code'])}</td><td>{esc(e['detail'] or '')}</td></tr>"
            for e in events
        )
        body.append(
            f"<table><tr><th>time</th><th>kind</th><th>GPU</th><th>code</th><th>detail</th></tr>{rows}</table>"
        )
    else:
        body.append("<p>No events other than clock changes.</p>")
    return head + "".join(body) + "</body></html>\n"


def _summary_html(summary: Summary) -> str:
    """The `monitor report` summary as HTML: each markdown line as a paragraph or list item."""
    out = []
    in_list = False
    for line in render_markdown_lines(summary):
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{esc(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("## "):
            out.append(f"<h2>{esc(line[3:])}</h2>")
        elif line.startswith("# "):
            continue
        elif line:
            out.append(f"<p>{esc(line)}</p>")
    if in_list:
        out.append("</ul>")
    return "".join(out)
