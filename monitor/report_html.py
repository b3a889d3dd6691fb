"""report.html: one self-contained page (inline SVG and CSS, no script, no network) summarising a window.

Per-GPU heatmaps over time for the main metrics, rack timelines (tokens/s, power, NVLink traffic and
errors) with events as markers on the time axis, and the summary `monitor report` prints.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from collectors.rack import GPUS, GPUS_PER_TRAY, gpu_label
from monitor.report import EmptyReportError, Summary, summarize
from monitor.report_nvlink import epoch_ms_list, nvlink_rates_over, rack_total
from monitor.report_text import render_markdown_lines
from monitor.timespec import Window, iso
from storage.rack_total import power_ticks_sql
from storage.reader import StoreReader
from storage.schemas import SORT_KEYS

COLUMNS = 120
"""Time buckets across a heatmap or timeline: enough to see a fault's onset, small enough to stay light."""
HEATMAPS = (
    ("power_mw / 1000.0", "Power", "W"),
    ("temp_gpu_c", "GPU temperature", "C"),
    ("sm_clock_mhz", "SM clock", "MHz"),
    ("util_gpu_pct", "GPU utilisation", "%"),
)
PALETTE = ("#30123b", "#4145ab", "#4675ed", "#39a2fc", "#1bcfd4", "#24eca6", "#61fc6c", "#a4fc3b",
           "#d1e834", "#f3c63a", "#fe9b2d", "#f36315", "#d93806", "#b11901", "#7a0403")  # fmt: skip
"""Turbo, 15 steps: readable on screen and in print, distinct from the grey of missing cells."""
EVENT_COLOURS = {
    "xid": "#d00",
    "gpu_lost": "#d00",
    "recording_stopped": "#d00",
    "gpu_recovered": "#2a2",
    "recording_resumed": "#2a2",
    "link_down": "#e80",
    "endpoint_down": "#e80",
}
"""Event lines on the timelines: red for a GPU gone, an XID or recording stopped, orange for a link or
endpoint down, green for a GPU back or recording resumed; every other kind grey."""
CSS = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
svg{display:block;margin:.4em 0}text{font:11px monospace;fill:#333}.muted{color:#777}"""
LEFT, TOP, CELL_H = 46, 8, 5


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _hhmm(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


class _Axis:
    """Maps data time to x pixels, shared by every chart so their time axes line up."""

    def __init__(self, first_ms: int, last_ms: int, width: int = 960) -> None:
        self.first, self.last, self.width = first_ms, max(last_ms, first_ms + 1), width
        step = max(1, math.ceil((self.last - self.first + 1) / COLUMNS))
        # Steps of whole minutes past two hours: counter rates then come from the 1 min rollups
        # (storage.counter_rates) instead of a window over every raw NVLink row.
        self.step_ms = -(-step // 60_000) * 60_000 if step > 60_000 else step
        self.buckets = math.ceil((self.last - self.first + 1) / self.step_ms)

    def x(self, ms: float) -> float:
        return LEFT + (ms - self.first) / (self.last - self.first) * (self.width - LEFT - 10)

    def ticks(self, y: float) -> str:
        out = []
        for i in range(6):
            ms = self.first + (self.last - self.first) * i / 5
            # The last label ends at its tick: centred, it would run past the chart's right edge.
            anchor = "end" if i == 5 else "middle"
            out.append(f'<text x="{self.x(ms):.1f}" y="{y}" text-anchor="{anchor}">{_hhmm(ms)}</text>')
        return "".join(out)

    def mid(self, start_ms: float) -> float:
        """The middle of the step starting at start_ms, as far as it lies inside the axis."""
        lo, hi = max(start_ms, self.first), min(start_ms + self.step_ms - 1, self.last)
        return min(max((lo + hi) / 2, self.first), self.last)

    def bucket_sql(self) -> str:
        return f"((epoch_ms(ts) - {self.first}) // {self.step_ms})"


def _cell(first: int, end: int, cell_w: float, axis: _Axis, y: int, colour: str) -> str:
    """Buckets first..end-1 of a heatmap row as one rect. It overlaps its right neighbour by 0.3 px (no
    hairline of background between them) but stops at the plot area's edge, rounding included."""
    right = LEFT + axis.buckets * cell_w
    x0 = round(LEFT + first * cell_w, 1)
    x1 = round(min(right, LEFT + end * cell_w + 0.3), 1)
    return f'<rect x="{x0:.1f}" y="{y}" width="{x1 - x0:.1f}" height="{CELL_H}" fill="{colour}"/>'


def _colour(value: float | None, lo: float, hi: float) -> str:
    if value is None or not math.isfinite(value):
        return "#ccc"
    share = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    return PALETTE[min(len(PALETTE) - 1, max(0, int(share * len(PALETTE))))]


def _heatmap(reader: StoreReader, window: Window, axis: _Axis, expr: str, title: str, unit: str) -> str:
    rel = reader.relation("gpu", window.since_ms, window.until_ms)
    rows = reader.sql(
        f"SELECT gpu, {axis.bucket_sql()} AS b, avg({expr}) AS v FROM {rel} GROUP BY ALL"
    ).to_pylist()
    values = [r["v"] for r in rows if r["v"] is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    cell_w = (axis.width - LEFT - 10) / axis.buckets
    height = TOP + GPUS * CELL_H + 40
    parts = [f'<svg width="{axis.width}" height="{height}" role="img" aria-label="{_esc(title)} per GPU">']
    grid: dict[int, dict[int, float]] = {}
    for r in rows:
        if r["v"] is not None:
            grid.setdefault(r["gpu"], {})[r["b"]] = r["v"]
    parts.append(_plot_area(axis, TOP, GPUS * CELL_H))
    for g, cells in sorted(grid.items()):
        y = TOP + g * CELL_H
        parts.append(f'<g class="marks"><title>{_esc(gpu_label(g))}</title>')
        run_start, run_colour = 0, None
        # Neighbouring buckets of one colour become one rect: a calm GPU row is a handful of shapes.
        for b in range(axis.buckets + 1):
            colour = _colour(cells.get(b), lo, hi) if b < axis.buckets else None
            if colour != run_colour:
                if run_colour is not None and run_colour != "#ccc":
                    parts.append(_cell(run_start, b, cell_w, axis, y, run_colour))
                run_start, run_colour = b, colour
        parts.append("</g>")
    for tray in range(1, GPUS // GPUS_PER_TRAY + 1, 2):
        y = TOP + (tray - 1) * GPUS_PER_TRAY * CELL_H + 2 * CELL_H + 4
        parts.append(f'<text x="4" y="{y}">T{tray:02d}</text>')
    parts.append(axis.ticks(TOP + GPUS * CELL_H + 14))
    for i, colour in enumerate(PALETTE):
        parts.append(
            f'<rect x="{LEFT + 200 + i * 14}" y="{height - 14}" width="14" height="10" fill="{colour}"/>'
        )
    parts.append(f'<text x="{LEFT}" y="{height - 5}">{title} ({unit})</text>')
    parts.append(f'<text x="{LEFT + 200 - 4}" y="{height - 5}" text-anchor="end">{lo:.0f}</text>')
    parts.append(f'<text x="{LEFT + 204 + len(PALETTE) * 14}" y="{height - 5}">{hi:.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


Point = tuple[float, float, str | None]
"""A chart point: (time ms, value, None for a whole tick or what a partial one covers, e.g. '71/72 GPUs')."""
PLOT_TOP, PLOT_H = 18, 90


def _timeline(
    axis: _Axis,
    points: Sequence[Point],
    title: str,
    unit: str,
    events: Sequence[dict[str, Any]],
) -> str:
    """One rack timeline: whole ticks joined by a line, partial ones as hollow marks (never a dip)."""
    height = 130
    parts = [f'<svg width="{axis.width}" height="{height}" role="img" aria-label="{_esc(title)}">']
    parts.append(f'<text x="{LEFT}" y="12">{_esc(title)} ({unit})</text>')
    parts.append(_plot_area(axis, PLOT_TOP, PLOT_H))
    parts.append('<g class="marks">')  # events and data points: what must lie inside the plot area
    for e in events:
        x = axis.x(e["ms"])
        colour = EVENT_COLOURS.get(e["kind"], "#999")
        label = _esc(f"{iso(e['ms'])} {e['kind']} gpu={e['gpu']} code={e['code']} {e['detail'] or ''}")
        parts.append(
            f'<line x1="{x:.1f}" y1="{PLOT_TOP}" x2="{x:.1f}" y2="{PLOT_TOP + PLOT_H}" stroke="{colour}" '
            f'stroke-dasharray="2,2"><title>{label}</title></line>'
        )
    finite = sorted((p for p in points if p[1] is not None and math.isfinite(p[1])), key=lambda p: p[0])
    if not finite:
        parts.append(f'</g><text x="{LEFT + 10}" y="60">no data in this window</text>')
        return "".join([*parts, axis.ticks(height - 8), "</svg>"])
    lo, hi = min(p[1] for p in finite), max(p[1] for p in finite)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0

    def y(v: float) -> float:
        return PLOT_TOP + PLOT_H - (v - lo + pad) / (hi - lo + 2 * pad) * PLOT_H

    parts += _whole_lines(axis, finite, y)
    partial = [(t, v, what) for t, v, what in finite if what is not None]
    for t, v, what in partial:
        tip = _esc(f"{_hhmm(t)} partial: {_num(v)} {unit} from {what}")
        parts.append(
            f'<circle cx="{axis.x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="none" stroke="#e80">'
            f"<title>{tip}</title></circle>"
        )
    parts.append("</g>")
    if partial:
        parts.append(
            f'<text x="{axis.width - 10}" y="12" text-anchor="end">o: {len(partial)} partial '
            "(not every source reported; not the whole rack)</text>"
        )
    for v in (hi, lo):
        parts.append(f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{_num(v)}</text>')
    return "".join([*parts, axis.ticks(height - 8), "</svg>"])


def _whole_lines(axis: _Axis, points: Sequence[Point], y: Callable[[float], float]) -> list[str]:
    """The whole points (in time order) as lines, broken at each hole in the data; a lone one as a dot."""
    runs = _runs([t for t, _, _ in points], axis.step_ms)
    out = []
    for run in sorted(set(runs)):
        whole = [
            (axis.x(t), y(v))
            for (t, v, what), r in zip(points, runs, strict=True)
            if r == run and what is None
        ]
        if len(whole) == 1:  # a polyline of one vertex would draw nothing
            out.append(f'<circle cx="{whole[0][0]:.1f}" cy="{whole[0][1]:.1f}" r="2" fill="#1f5fbf"/>')
        elif whole:
            line = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in whole)
            out.append(f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{line}"/>')
    return out


def _runs(times: Sequence[float], step_ms: int) -> list[int]:
    """Per point (times in order), how many holes in the data lie before it: the line breaks there.
    A hole is over 3x the usual gap (step or median gap): a step left empty by the sampling stays joined."""
    gaps = [b - a for a, b in pairwise(times)]
    usual = max(step_ms, statistics.median(gaps)) if gaps else step_ms
    out, holes = [0] * len(times), 0
    for i, gap in enumerate(gaps, start=1):
        holes += gap > 3 * usual
        out[i] = holes
    return out


def _plot_area(axis: _Axis, top: float, height: float) -> str:
    """The frame every mark of a chart lies inside (tests/post/test_report_browser.py checks it)."""
    return (
        f'<rect class="plot" x="{LEFT}" y="{top}" width="{axis.width - LEFT - 10}" height="{height}" '
        'fill="none" stroke="#e4e4e4"/>'
    )


def _num(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:.3g}"


def _series(reader: StoreReader, window: Window, axis: _Axis) -> dict[str, list[Point]]:
    """Rack-wide values per time bucket: tokens/s, kW, NVLink TB/s and link errors per second."""
    return {
        "tokens": _stepped(reader, window, axis, "serving", ("generation_tokens",), 1.0, "endpoints"),
        "power": _power(reader, window, axis),
        "nvlink": _nvlink(reader, window, axis),
        "errors": _stepped(
            reader, window, axis, "nvlink", ("symbol_errors", "rx_errors", "recovery_failed"), 1.0, "links"
        ),
    }


def _stepped(
    reader: StoreReader,
    window: Window,
    axis: _Axis,
    table: str,
    columns: Sequence[str],
    scale: float,
    what: str,
) -> list[Point]:
    """Per step, the sum of every series' rate (storage.increase's rule, per column), with coverage.

    A step where fewer series had a rate than the window holds is a partial point (marked, not a dip).
    """
    keys = SORT_KEYS[table]
    rel = reader.relation(table, window.since_ms, window.until_ms)
    of = reader.sql(f"SELECT count(DISTINCT ({', '.join(keys)})) FROM {rel}").column(0)[0].as_py() or 0
    sums: dict[int, float] = {}
    covered: dict[int, set[tuple[Any, ...]]] = {}
    for column in columns:
        rated = reader.rate(table, column, window.since_ms, window.until_ms, step_ms=axis.step_ms)
        starts = epoch_ms_list(rated.column("ts"))
        series = zip(*(rated.column(k).to_pylist() for k in keys), strict=True)
        for start, key, rate in zip(starts, series, rated.column("rate").to_pylist(), strict=True):
            if rate is not None and math.isfinite(rate):
                sums[start] = sums.get(start, 0.0) + rate * scale
                covered.setdefault(start, set()).add(key)
    out: list[Point] = []
    for start in sorted(sums):
        n = len(covered[start])
        out.append((axis.mid(start), sums[start], None if n >= of else f"{n}/{of} {what}"))
    return out


def _nvlink(reader: StoreReader, window: Window, axis: _Axis) -> list[Point]:
    """Rack NVLink TX+RX TB/s per step, by the header's rule (monitor.report_nvlink).

    A step whose sum covers fewer GPUs than the window holds, or leaves implausible links out, is a
    partial point that says so (marked, not a dip).
    """
    of = _gpus_in(reader, window)
    out: list[Point] = []
    for start, rates in nvlink_rates_over(reader, window.since_ms, window.until_ms, axis.step_ms).items():
        total = rack_total(rates, of)
        if total.total.value is None:
            continue
        what = None
        if not total.total.whole or total.implausible:
            what = total.total.coverage("GPUs")
            if total.implausible:
                what += f", {total.implausible} links implausible, left out"
        out.append((axis.mid(start), total.total.value, what))
    return out


def _gpus_in(reader: StoreReader, window: Window) -> int:
    """GPUs with a row in the window: what a rack total over GPUs is out of."""
    rel = reader.relation("gpu", window.since_ms, window.until_ms)
    return reader.sql(f"SELECT count(DISTINCT gpu) FROM {rel}").column(0)[0].as_py() or 0


def _power(reader: StoreReader, window: Window, axis: _Axis) -> list[Point]:
    """Rack kW per bucket: the mean of its whole ticks; a bucket without any is a partial point."""
    rel = reader.relation("gpu", window.since_ms, window.until_ms)
    of = _gpus_in(reader, window)
    ticks = reader.sql(
        f"SELECT {axis.bucket_sql()} AS b, kw, covered FROM ({power_ticks_sql(rel)}) WHERE kw IS NOT NULL"
    ).to_pylist()
    whole: dict[int, list[float]] = {}
    partial: dict[int, list[tuple[float, int]]] = {}
    for t in ticks:
        if t["covered"] >= of:
            whole.setdefault(t["b"], []).append(t["kw"])
        else:
            partial.setdefault(t["b"], []).append((t["kw"], t["covered"]))
    out: list[Point] = []
    for b in sorted(set(whole) | set(partial)):
        mid = axis.mid(axis.first + b * axis.step_ms)
        if b in whole:
            out.append((mid, statistics.fmean(whole[b]), None))
        else:
            least = min(c for _, c in partial[b])
            out.append((mid, statistics.fmean(kw for kw, _ in partial[b]), f"{least}/{of} GPUs"))
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
        f"{_esc(title)}</title><style>{CSS}</style></head><body>"
    )
    try:
        summary = summarize(reader, window)
    except EmptyReportError as err:
        return f"{head}<h1>rack-monitor report: {_esc(title)}</h1><p>{_esc(err)}</p></body></html>\n"
    rel = reader.relation("events", window.since_ms, window.until_ms)
    events = reader.sql(
        f"SELECT epoch_ms(ts) AS ms, kind, gpu, code, detail FROM {rel} WHERE kind <> 'clocks_event' "
        "ORDER BY ts LIMIT 500"
    ).to_pylist()
    first, last = _data_range(reader, window)
    # The time axis spans the events drawn too: one recorded before the first sample or after the
    # last (a collector stopping) would otherwise be a marker outside its chart.
    axis = _Axis(min([first, *(e["ms"] for e in events)]), max([last, *(e["ms"] for e in events)]))
    series = _series(reader, window, axis)
    body = [f"<h1>rack-monitor report: {_esc(title)}</h1>"]
    body.append(_summary_html(summary))
    body.append("<h2>Rack timelines</h2>")
    body.append(_timeline(axis, series["tokens"], "Generated tokens/s", "tok/s", events))
    body.append(_timeline(axis, series["power"], "Rack GPU power", "kW", events))
    body.append(_timeline(axis, series["nvlink"], "NVLink traffic (TX+RX)", "TB/s", events))
    body.append(_timeline(axis, series["errors"], "NVLink errors", "per s", events))
    body.append("<h2>Per GPU over time</h2>")
    for expr, name, unit in HEATMAPS:
        body.append(_heatmap(reader, window, axis, expr, name, unit))
    body.append("<h2>Events</h2>")
    if events:
        rows = "".join(
            f"<tr><td>{_esc(iso(e['ms']))}</td><td>{_esc(e['kind'])}</td><td>{_esc(e['gpu'])}</td>"
            f"<td>{_esc(e['code'])}</td><td>{_esc(e['detail'] or '')}</td></tr>"
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
            out.append(f"<li>{_esc(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("## "):
            out.append(f"<h2>{_esc(line[3:])}</h2>")
        elif line.startswith("# "):
            continue
        elif line:
            out.append(f"<p>{_esc(line)}</p>")
    if in_list:
        out.append("</ul>")
    return "".join(out)
