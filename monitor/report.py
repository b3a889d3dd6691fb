"""`monitor report`'s maths: what a window of history says about throughput, efficiency, latency and faults.

Everything comes from a StoreReader over the window: counters become increases with reset detection,
NVLink traffic is the live view's one computation over each link's rate (monitor.report_nvlink),
latency percentiles come from histogram bucket increases (PromQL's algorithm), and the slowest GPUs
are found against their peers with median and MAD, which one bad GPU cannot drag along with it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pynvml

from collectors.rack import gpu_label
from monitor.progress import Progress
from monitor.report_links import link_faults
from monitor.report_nvlink import nvlink_total
from monitor.report_suspects import suspects
from monitor.timespec import Window, iso
from storage import counter_rates
from storage.quantile import bucket_quantile
from storage.rack_total import RackTotal, power_ticks_sql, tokens_total
from storage.reader import StoreReader

Summary = dict[str, Any]
"""A report: plain JSON-ready values (the json format prints it as is)."""

SLOWDOWN_REASONS = (
    pynvml.nvmlClocksEventReasonHwSlowdown
    | pynvml.nvmlClocksEventReasonSwThermalSlowdown
    | pynvml.nvmlClocksEventReasonHwThermalSlowdown
    | pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
)
"""Clock-event reasons that mean the GPU is held back by something wrong (not idle, not a power cap)."""
THERMAL_REASONS = (
    pynvml.nvmlClocksEventReasonSwThermalSlowdown | pynvml.nvmlClocksEventReasonHwThermalSlowdown
)
QUANTILES = (0.5, 0.9, 0.99)
TOKENS = ("generation_tokens", "prompt_tokens")
"""The serving table's token counters the report rates (in one statement)."""
SUMMARY_STEPS = 5
"""Parts summarize() reports to its progress: GPU side, serving side, links, NVLink, suspects."""


class EmptyReportError(Exception):
    """The window holds no GPU or serving rows; the message says what the store holds."""


def _rows(reader: StoreReader, query: str) -> list[dict[str, Any]]:
    return reader.sql(query).to_pylist()


def _gpu_side(reader: StoreReader, window: Window) -> Summary:
    """Per-GPU clocks, power, temperatures, slowdown share and state, and rack power and energy."""
    rel = reader.relation("gpu", window.since_ms, window.until_ms)
    per_gpu = _rows(
        reader,
        f"""SELECT gpu, count(*) AS samples, count(*) FILTER (WHERE state = 1) AS lost,
            avg(sm_clock_mhz) AS clock, avg(power_mw) / 1000 AS power_w, min(power_mw) / 1000 AS power_min_w,
            max(power_mw) / 1000 AS power_max_w, min(temp_gpu_c) AS temp_min, max(temp_gpu_c) AS temp_max,
            avg(temp_gpu_c) AS temp_mean,
            avg(((clocks_event_reasons & {SLOWDOWN_REASONS}) != 0)::INT) AS slowdown,
            avg(((clocks_event_reasons & {THERMAL_REASONS}) != 0)::INT) AS thermal,
            min(nvlink_up) AS links_up_min
        FROM {rel} GROUP BY gpu ORDER BY gpu""",
    )
    # One row per GPU in the window: the GPUs a rack figure is out of (no second scan to count them).
    rack = _rack_power(reader, rel, len(per_gpu))
    energy = reader.rate("gpu", "energy_mj", window.since_ms, window.until_ms)
    joules = sum(energy.column("increase").to_pylist()) / 1000 if energy.num_rows else 0.0
    return {"per_gpu": per_gpu, "rack": rack, "joules": joules}


def _rack_power(reader: StoreReader, rel: str, of: int) -> Summary:
    """Rack power over the window by storage.rack_total's rule: min/mean/max over whole ticks only.

    A tick where some GPUs did not report is partial: it is counted (and its lowest coverage named)
    but never taken for the rack's power, so a tray that missed a deadline cannot read as a dip.
    """
    ticks = f"({power_ticks_sql(rel)})"
    row = _rows(
        reader,
        f"""SELECT min(kw) FILTER (WHERE covered >= {of}) AS lo,
            avg(kw) FILTER (WHERE covered >= {of}) AS mean,
            max(kw) FILTER (WHERE covered >= {of}) AS hi, count(*) AS ticks,
            count(*) FILTER (WHERE covered < {of}) AS partial_ticks,
            min(covered) AS least_covered, epoch_ms(min(ts)) AS first, epoch_ms(max(ts)) AS last,
            arg_max(kw, ts) AS last_kw, arg_max(covered, ts) AS last_covered
        FROM {ticks}""",
    )[0]
    return row | {"of": of}


def _serving_side(reader: StoreReader, window: Window) -> Summary | None:
    """Tokens/s (the sum of per-series rates, with its coverage) and per-GPU shares, or None without rows."""
    endpoints = endpoint_spans(reader, window)
    if not endpoints:
        return None
    span = {"first": min(r["first"] for r in endpoints), "last": max(r["last"] for r in endpoints)}
    series = sum(r["series"] for r in endpoints)
    wall = (span["last"] - span["first"]) / 1000
    both = reader.rates("serving", TOKENS, window.since_ms, window.until_ms).to_pylist()
    gen = [r for r in both if r["counter"] == "generation_tokens"]
    prompt = [r for r in both if r["counter"] == "prompt_tokens"]
    placement = {
        r["endpoint"]: [int(g) for g in (r["gpus"] or "").split(",") if g.strip().isdigit()]
        for r in endpoints
    }
    tokens = tokens_total((r["rate"] for r in gen), series)
    prompted = tokens_total((r["rate"] for r in prompt), series)
    per_endpoint: dict[str, float] = {}
    for r in gen:
        if r["rate"] is not None:
            per_endpoint[r["endpoint"]] = per_endpoint.get(r["endpoint"], 0.0) + r["rate"]
    per_gpu: dict[int, float] = {}
    for endpoint, rate in per_endpoint.items():
        gpus = placement.get(endpoint, [])
        for g in gpus:
            # Tensor-parallel ranks share an instance's tokens evenly: they all work on every token.
            per_gpu[g] = per_gpu.get(g, 0.0) + rate / len(gpus)
    return {
        "first": span["first"],
        "last": span["last"],
        "wall_s": wall,
        "endpoints": len(placement),
        "generated_tokens": sum(r["increase"] for r in gen),
        "prompt_tokens": sum(r["increase"] for r in prompt),
        "tokens_per_s": _value(tokens),
        "tokens_covered": tokens.covered,
        "tokens_of": tokens.of,
        "prompt_tokens_per_s": _value(prompted),
        "per_gpu_tokens_per_s": per_gpu,
        "placement": placement,
        "latency": _latency(reader, window),
    }


def endpoint_spans(reader: StoreReader, window: Window) -> list[dict[str, Any]]:
    """Per endpoint with serving rows in the window: its first and last row (epoch ms), its series
    (engines: a series is (endpoint, engine)) and its GPUs at its last row that names them.

    Whole compacted hours and minutes are read from the serving rollups, whose bucket rows carry their
    rows' first and last times (first_ms, last_ms) and last `gpus`; raw rows only at the edges. Rollup
    files written before first_ms existed leave those times unknown (NULL beside newer files, no column
    at all alone): the window is then read raw.
    """
    since, until = window.since_ms, window.until_ms
    spans = counter_rates.span_relations(reader.relation, reader.manifest, "serving", since, until)
    try:
        rows = _rows(reader, _endpoint_sql(" UNION ALL ".join(_endpoint_rows(s.kind, r) for s, r in spans)))
        known = not any(r["unknown"] for r in rows)
    except counter_rates.missing_column_errors():  # no rollup file of a span has first_ms
        known = False
    if not known:
        rows = _rows(reader, _endpoint_sql(_endpoint_rows("raw", reader.relation("serving", since, until))))
    return [{k: v for k, v in r.items() if k != "unknown"} for r in rows]


def _endpoint_rows(kind: str, rel: str) -> str:
    """(endpoint, engine, gpus, first, last) of a raw relation's rows or a rollup's buckets."""
    ts = "epoch_ms(ts)"
    first, last = (ts, ts) if kind == "raw" else (f"{ts} + first_ms", f"{ts} + last_ms")
    return f"SELECT endpoint, engine, gpus, {first} AS first, {last} AS last FROM {rel}"


def _endpoint_sql(rows: str) -> str:
    """endpoint_spans' aggregate over `rows` (_endpoint_rows'), with how many rows' times are unknown."""
    return f"""SELECT endpoint, min(first) AS first, max(last) AS last, count(DISTINCT engine) AS series,
        arg_max(gpus, last) AS gpus, count(*) FILTER (WHERE first IS NULL OR last IS NULL) AS unknown
        FROM ({rows}) GROUP BY endpoint"""


def _value(total: RackTotal) -> float:
    return math.nan if total.value is None else total.value


def _bucket_increases(reader: StoreReader, window: Window) -> list[dict[str, Any]]:
    """Each latency histogram bucket's increase over the window, per series (storage.increase's rule)."""
    # Only the two histograms the report shows are read: serving_hist holds five, 17 M rows a rack-hour.
    wanted = "metric IN ('ttft', 'itl')"
    return reader.rate("serving_hist", "count", window.since_ms, window.until_ms, series=wanted).to_pylist()


def _latency(reader: StoreReader, window: Window) -> dict[str, dict[str, float | None]]:
    """p50/p90/p99 of TTFT and ITL in seconds over the window (None: no observations)."""
    inc = _bucket_increases(reader, window)
    out: dict[str, dict[str, float | None]] = {}
    for metric in ("ttft", "itl"):
        buckets: dict[float, float] = {}
        for r in inc:
            if r["metric"] == metric:
                buckets[r["le"]] = buckets.get(r["le"], 0.0) + r["increase"]
        ordered = sorted(buckets.items())
        out[metric] = {}
        for q in QUANTILES:
            value = bucket_quantile(q, ordered)
            out[metric][f"p{round(q * 100)}"] = None if math.isnan(value) else value
    return out


def _events(reader: StoreReader, window: Window) -> Summary:
    rel = reader.relation("events", window.since_ms, window.until_ms)
    kinds = _rows(reader, f"SELECT kind, count(*) AS n FROM {rel} GROUP BY kind ORDER BY n DESC, kind")
    xids = _rows(
        reader,
        f"""SELECT code, count(*) AS n, list(DISTINCT gpu ORDER BY gpu) AS gpus FROM {rel}
        WHERE kind = 'xid' GROUP BY code ORDER BY code""",
    )
    return {"by_kind": {r["kind"]: r["n"] for r in kinds}, "xids": xids}


def _links_down(per_gpu: Sequence[Summary], links: Sequence[Summary]) -> list[Summary]:
    """GPUs with fewer than 18 links up at some sample, each with the links (link_faults) that went down."""
    return [
        {
            "gpu": r["gpu"],
            "label": gpu_label(r["gpu"]),
            "links_up_min": r["links_up_min"],
            "links": [
                {"link": f["link"], "down": iso(f["down_ms"])}
                for f in links
                if f["gpu"] == r["gpu"] and f["down_ms"] is not None
            ],
        }
        for r in per_gpu
        if r["links_up_min"] is not None and r["links_up_min"] < 18
    ]


def stored_span(reader: StoreReader) -> tuple[int, int] | None:
    """The first and last row time (epoch ms) of the store's GPU and serving tables, None when it has none.

    Taken from the manifest's per-file times, so no file is opened (a month's store answers at once).
    """
    files = [f for table in ("gpu", "serving") for f in reader.manifest.of(table) if f.rows]
    if not files:
        return None
    return min(f.min_ts for f in files), max(f.max_ts for f in files)


def summarize(
    reader: StoreReader,
    window: Window,
    progress: Progress | None = None,
    *,
    nvlink_steps: pa.Table | None = None,
) -> Summary:
    """Everything `monitor report` says about `window` of the store behind `reader`.

    Args:
        reader: the store.
        window: the window.
        progress: advanced by one unit per part of the report (SUMMARY_STEPS in all).
        nvlink_steps: the window's NVLink increases per step (report_nvlink.link_increases), when the
            caller has them (report.html): the NVLink total is summed from them, not read again.

    Raises:
        EmptyReportError: the window holds no GPU and no serving rows.
    """
    done = progress.advance if progress is not None else _no_progress
    gpu_side = _gpu_side(reader, window)
    done(1, "serving")
    serving = _serving_side(reader, window)
    done(1, "links")
    rack = gpu_side["rack"]
    if rack["first"] is None and serving is None:
        held = stored_span(reader)
        holds = f"it holds {iso(held[0])} .. {iso(held[1])}" if held else "it holds no GPU or serving rows"
        raise EmptyReportError(f"no data between {iso(window.since_ms)} and {iso(window.until_ms)} ({holds})")
    wall = (rack["last"] - rack["first"]) / 1000 if rack["first"] is not None else 0.0
    joules = gpu_side["joules"]
    temps = [r for r in gpu_side["per_gpu"] if r["temp_max"] is not None]
    hottest = max(temps, key=lambda r: r["temp_max"]) if temps else None
    links = link_faults(reader, window)
    links_down = _links_down(gpu_side["per_gpu"], links)
    done(1, "nvlink")
    nvlink = nvlink_total(reader, window.since_ms, window.until_ms, rack["of"], nvlink_steps).as_dict()
    done(1, "suspects")
    summary: Summary = {
        "window": {"since": iso(window.since_ms), "until": iso(window.until_ms), "how": window.how},
        "data": {
            "first": iso(rack["first"]) if rack["first"] is not None else None,
            "last": iso(rack["last"]) if rack["last"] is not None else None,
            "ticks": rack["ticks"],
            "gpus": len(gpu_side["per_gpu"]),
            "wall_s": wall,
            "serving": None
            if serving is None
            else {
                "first": iso(serving["first"]),
                "last": iso(serving["last"]),
                "endpoints": serving["endpoints"],
            },
        },
        "serving": None,
        "energy": {
            "joules": joules,
            "mean_power_kw": joules / wall / 1000 if wall > 0 else None,
            "tokens_per_joule": None,
        },
        "power_kw": {
            "min": rack["lo"],
            "mean": rack["mean"],
            "max": rack["hi"],
            "last": rack["last_kw"],
            "last_covered": rack["last_covered"],
            "of": rack["of"],
            "partial_ticks": rack["partial_ticks"],
            "least_covered": rack["least_covered"],
        },
        "gpu_power_w": _range(gpu_side["per_gpu"], "power_min_w", "power_max_w"),
        "temperature_c": _range(gpu_side["per_gpu"], "temp_min", "temp_max")
        | {"hottest": gpu_label(hottest["gpu"]) if hottest else None},
        "nvlink": nvlink,
        "links_down": links_down,
        "events": _events(reader, window),
        "suspects": suspects(reader, window, gpu_side, serving, SLOWDOWN_REASONS, links),
    }
    done(1, None)
    if serving is not None:
        del serving["first"], serving["last"], serving["placement"]
        tok = serving.pop("per_gpu_tokens_per_s")
        values = [v for v in tok.values() if math.isfinite(v)]
        median = statistics.median(values) if values else None
        serving["per_gpu"] = {
            "median": median,
            "mad": statistics.median(abs(v - median) for v in values) if median is not None else None,
            "slowest": [
                {"gpu": g, "label": gpu_label(g), "tokens_per_s": v}
                for g, v in sorted(tok.items(), key=lambda kv: kv[1])[:5]
            ],
        }
        summary["serving"] = serving
        if joules > 0:
            summary["energy"]["tokens_per_joule"] = serving["generated_tokens"] / joules
    return summary


def _no_progress(units: int, what: str | None = None) -> None:
    """No progress to show."""


def _range(rows: Sequence[Summary], lo: str, hi: str) -> dict[str, float | None]:
    lows = [r[lo] for r in rows if r[lo] is not None]
    highs = [r[hi] for r in rows if r[hi] is not None]
    return {"min": min(lows) if lows else None, "max": max(highs) if highs else None}
