"""`monitor report`'s link faults: links whose error counters climbed by the live rule, or that went down.

The rule (collectors.alert_rules link_errors) fires when a link's error counters grew in `on` samples
within `window_s`; finding when it first fired takes every sample in order (a lag() and a range
window), which over a day of 1,296 links is hundreds of millions of rows. Most of them cannot hold a
fault, and the 1 min rollups say which, without a sort:

- a minute bucket's `errors_grew` (storage.schemas.GROWTH_COUNTS) counts the samples inside it whose
  counters grew, bar its first sample, whose pair starts in the minute before; that one grew only if
  some counter's first value differs from the previous minute's last (or there is no previous minute
  to compare with). So `grow` = `errors_grew` + that 0/1 bounds the minute's growth samples. Files
  written before `errors_grew` bound it by the sum of `<c>_inc` (reset-corrected, integer: at least the
  samples that grew, but 50 for one sample that jumped by 50); a bucket without `_inc` counts as `on`, a
  raw minute of the open hour as `on` when any counter changed in it;
- a window of `window_s` (60 s) lies in at most two neighbouring minutes, so the rule can fire only in
  a pair of minutes whose `grow` sum reaches `on`; a link can first go down only in a minute whose
  state_min is inactive.

The exact query then reads raw rows only in those minutes (each stretch with the minute before it, so
its first sample has its predecessor; stretches never pair across a gap), plus the window's first two
minutes, where the link's first and second samples are (for `at_start`). A link with fewer than two
samples there is read over the whole window. Counts inside a stretch are never above the true ones,
and every window that truly fires lies inside one, so the onsets are those of the whole-window query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from collectors.alert_rules import AlertRules, Threshold
from collectors.rack import gpu_label
from monitor.report_nvlink import Link, links_sql
from monitor.timespec import Window
from monitor.view.nvlink import NVLINK_INACTIVE
from storage import counter_rates
from storage.increase import step_sql
from storage.reader import StoreReader
from storage.rollups import ROLLUP_STEPS, rollup_name
from storage.schemas import GROWTH_COUNTS, NVLINK_ERRORS
from storage.sql_text import identifier

LINK_ERRORS = NVLINK_ERRORS
GREW = GROWTH_COUNTS["nvlink"][0]
MINUTE_MS = ROLLUP_STEPS["1m"]
HEAD_MS = 2 * MINUTE_MS
"""The window's first minutes, read for every faulty link: where its first and second samples are."""
Stretch = tuple[int, int]
"""Epoch ms from, to (inclusive) of raw rows to read."""


def fault_minutes(reader: StoreReader, window: Window, on: int) -> dict[Link, list[int]] | None:
    """Per link, the starts of the minutes (epoch ms) that may hold its rule's firing or its going down.

    None: the rollups cannot tell (files written before `_inc` existed); read every link whole.
    """
    for grew in (True, False):  # without `errors_grew` (older rollup files), bound by `_inc`
        try:
            rows = reader.rows(_flagged_minutes_sql(reader, window, on, grew))
        except (duckdb.BinderException, duckdb.InvalidInputException):
            continue
        out: dict[Link, list[int]] = {}
        for g, k, m in rows:
            out.setdefault((int(g), int(k)), []).append(int(m))
        return out
    return None


def _flagged_minutes_sql(reader: StoreReader, window: Window, on: int, grew: bool) -> str:
    """The query behind fault_minutes; `grew`: bound a bucket's growth samples by its `errors_grew`
    (NULL in files written before it, which fall back to the `_inc` bound)."""
    since, until = window.since_ms, window.until_ms
    bounds = counter_rates.rolled_bounds(reader.manifest, "nvlink")
    rolled, hours_rolled = (min(bounds[step], until + 1) for step in ("1m", "1h"))
    ends = ", ".join(f'"{c}_first" AS "f_{c}", "{c}_last" AS "l_{c}"' for c in LINK_ERRORS)
    parts = []
    if rolled > since:
        rel = reader.relation(rollup_name("nvlink", "1m"), since // MINUTE_MS * MINUTE_MS, rolled - 1)
        inc = " + ".join(
            f'(CASE WHEN "{c}_first" IS NULL THEN 0 ELSE coalesce("{c}_inc", {on}) END)' for c in LINK_ERRORS
        )
        inc = f'coalesce("{GREW}", {inc})' if grew else inc
        near = _near_active_hours(reader, since, hours_rolled, on)
        parts.append(
            f"SELECT gpu, link, epoch_ms(ts) AS m, {inc} AS c, {ends}, "
            f"state_min <= {NVLINK_INACTIVE} AS d FROM {rel}{near}"
        )
    if rolled <= until:
        parts.append(_raw_minutes_sql(reader.relation("nvlink", max(since, rolled), until)))
    entered = " OR ".join(f'g."f_{c}" IS DISTINCT FROM p."l_{c}"' for c in LINK_ERRORS)
    return f"""
        WITH g AS ({" UNION ALL ".join(parts)}),
        e AS (SELECT g.gpu, g.link, g.m, g.d,
                g.c + CASE WHEN p.m IS NULL OR {entered} THEN 1 ELSE 0 END AS grow
            FROM g LEFT JOIN g p ON p.gpu = g.gpu AND p.link = g.link AND p.m = g.m - {MINUTE_MS})
        SELECT e.gpu, e.link, e.m FROM e
            LEFT JOIN e n ON n.gpu = e.gpu AND n.link = e.link AND n.m = e.m + {MINUTE_MS}
            LEFT JOIN e b ON b.gpu = e.gpu AND b.link = e.link AND b.m = e.m - {MINUTE_MS}
        WHERE e.d OR e.grow + coalesce(n.grow, 0) >= {on} OR e.grow + coalesce(b.grow, 0) >= {on}
        ORDER BY e.gpu, e.link, e.m"""


def _growth_sql() -> tuple[str, str]:
    """(the error counters' lag() columns over window `w`, the sum of their steps from them): a sample
    grew when that sum is above 0 (storage.increase.step_sql, so a reset counts its new value)."""
    lags = ", ".join(f'lag("{c}") OVER w AS "{c}_prev"' for c in LINK_ERRORS)
    grew = " + ".join(f"coalesce({step_sql(identifier(c), identifier(c + '_prev'))}, 0)" for c in LINK_ERRORS)
    return lags, grew


def _raw_minutes_sql(rel: str) -> str:
    """Minutes no rollup holds yet (the open hour's newest), from raw rows, in the rollup part's columns:
    `c` counts the samples whose counters grew after a sample of the same minute, as `errors_grew` does
    (the minute's first sample is the boundary term's), so a minute where a counter moved once is not
    flagged as if it held `on` growth samples."""
    lags, grew = _growth_sql()
    ends = ", ".join(f'arg_min("{c}", ts) AS "f_{c}", arg_max("{c}", ts) AS "l_{c}"' for c in LINK_ERRORS)
    minute = f"epoch_ms(ts) // {MINUTE_MS} * {MINUTE_MS}"
    counters = ", ".join(identifier(c) for c in LINK_ERRORS)
    lagged = (
        f"SELECT gpu, link, ts, state, {counters}, {lags}, lag(ts) OVER w AS ts_prev "
        f"FROM {rel} WINDOW w AS (PARTITION BY gpu, link ORDER BY ts)"
    )
    within = f"epoch_ms(ts_prev) // {MINUTE_MS} * {MINUTE_MS} = {minute}"
    return (
        f"SELECT gpu, link, {minute} AS m, count(*) FILTER (WHERE {within} AND ({grew}) > 0) AS c, {ends}, "
        f"bool_or(state = {NVLINK_INACTIVE}) AS d FROM ({lagged}) GROUP BY gpu, link, m"
    )


def _near_active_hours(reader: StoreReader, since: int, rolled: int, on: int) -> str:
    """A WHERE clause dropping the 1 min buckets of a link's quiet hours, by the 1 h rollups; '' for no
    narrowing.

    In a quiet hour no pair of samples grew, so its minutes' `grow` is 0, but 1 where the minute
    before is not there to compare with (the hour's first, or one after a gap): no two neighbouring
    minutes reach 2, below `on` from 3 on. Only its edge minutes can pair with a busy neighbour's, so
    an hour is dropped only when its 1 h bucket says it was quiet and neither hour beside it was busy.
    An hour with no 1 h bucket (the open hour; an export bundle's cut first hour) is kept whole. A
    dropped hour's last minute truly grew 0, and without it the next kept minute counts its pair
    across as grown (+1), which is never less than the truth.
    """
    if on < 3:
        return ""
    hour = ROLLUP_STEPS["1h"]
    rel = reader.relation(rollup_name("nvlink", "1h"), since // hour * hour, rolled - 1)
    busy = " OR ".join(f'("{c}_first" IS NOT NULL AND coalesce("{c}_inc", 1) > 0)' for c in LINK_ERRORS)
    unknown = f"first_ms IS NULL OR state_min <= {NVLINK_INACTIVE}"
    hours = f"SELECT gpu, link, epoch_ms(ts) AS h, ({busy} OR {unknown}) AS b FROM {rel}"
    beside = (
        f"SELECT gpu, link, h, b, lag(h) OVER w AS ph, lag(b) OVER w AS pb, lead(h) OVER w AS nh, "
        f"lead(b) OVER w AS nb FROM ({hours}) WINDOW w AS (PARTITION BY gpu, link ORDER BY h)"
    )
    # `b` is NULL where a bucket's state is unknown: such an hour is kept, and keeps its neighbours.
    quiet = (
        f"SELECT gpu, link, h FROM ({beside}) WHERE NOT b "
        f"AND NOT coalesce(ph = h - {hour} AND coalesce(pb, true), false) "
        f"AND NOT coalesce(nh = h + {hour} AND coalesce(nb, true), false)"
    )
    return f" WHERE (gpu, link, epoch_ms(ts) // {hour} * {hour}) NOT IN (SELECT gpu, link, h FROM ({quiet}))"


def stretches(minutes: Sequence[int], window: Window) -> list[Stretch]:
    """Raw spans to read for a link's flagged minutes: neighbours merged, each from the minute before
    (its first sample's predecessor), and the window's head; clipped to the window."""
    spans = [(window.since_ms, window.since_ms + HEAD_MS - 1)]
    for m in minutes:
        lo, hi = m - MINUTE_MS, m + MINUTE_MS - 1
        if lo <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            spans.append((lo, hi))
    return [(max(lo, window.since_ms), min(hi, window.until_ms)) for lo, hi in spans if lo <= window.until_ms]


def link_faults(reader: StoreReader, window: Window, rules: AlertRules | None = None) -> list[dict[str, Any]]:
    """Links whose error counters climbed (the live link_errors rule) or that went down, each with its onset.

    Returns:
        Dicts with gpu, link, label ('T13.G4 link 7'), onset_ms, at_start (the onset is the link's
        first sample in the window that could show it: growth needs a sample before it, down does not),
        down_ms (first inactive sample or None) and errors (each error counter's increase over the
        window), by onset.
    """
    rule = (rules or AlertRules()).link_errors
    minutes = fault_minutes(reader, window, int(rule.on))
    if minutes is None:
        rows = _exact_faults(reader, window, None, rule)
    else:
        spans = {link: stretches(m, window) for link, m in minutes.items()}
        rows = _exact_faults(reader, window, spans, rule) if spans else []
        thin = {(r["gpu"], r["link"]) for r in rows if r["second"] is None}
        if thin:  # fewer than two samples in the window's head: the first two are further on
            rows = [r for r in rows if (r["gpu"], r["link"]) not in thin]
            whole = {link: [(window.since_ms, window.until_ms)] for link in thin}
            rows += _exact_faults(reader, window, whole, rule)
    if not rows:
        return []
    faulty = links_sql((r["gpu"], r["link"]) for r in rows)
    increases: dict[Link, dict[str, float]] = {}
    for r in reader.rates("nvlink", LINK_ERRORS, window.since_ms, window.until_ms, series=faulty).to_pylist():
        increases.setdefault((r["gpu"], r["link"]), {})[r["counter"]] = r["increase"]
    return sorted(
        (_fault(r, increases.get((r["gpu"], r["link"]), {})) for r in rows),
        key=lambda f: (f["onset_ms"], f["gpu"], f["link"]),
    )


def _fault(r: Mapping[str, Any], errors: Mapping[str, float]) -> dict[str, Any]:
    began = [t for t in (r["began"], r["down"]) if t is not None]
    at_start = (r["began"] is not None and r["began"] == r["second"]) or (
        r["down"] is not None and r["down"] == r["first"]
    )
    if at_start:  # already growing or down at the window's first sample: that is its onset
        began = [r["first"]]
    return {
        "gpu": r["gpu"],
        "link": r["link"],
        "label": f"{gpu_label(r['gpu'])} link {r['link']}",
        "onset_ms": min(began),
        "at_start": at_start,
        "down_ms": r["down"],
        "errors": {c: errors.get(c) or 0.0 for c in LINK_ERRORS},
    }


def _stretched_rows(reader: StoreReader, window: Window, spans: Mapping[Link, list[Stretch]] | None) -> str:
    """The nvlink rows of each link's stretches, with the stretch (its start) as `part`; every row of
    the window, as one part, when `spans` is None."""
    if spans is None:
        every = reader.relation("nvlink", window.since_ms, window.until_ms)
        return f"(SELECT *, {window.since_ms} AS part FROM {every})"
    # Stretches that overlap in time (the window's head, above all) are read by one scan, so a band's
    # row groups are decoded once, not once per link; a join with the stretches gives each row its part.
    merged: list[tuple[int, int, set[Link]]] = []
    for lo, hi, link in sorted((lo, hi, link) for link, link_spans in spans.items() for lo, hi in link_spans):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi), merged[-1][2] | {link})
        else:
            merged.append((lo, hi, {link}))
    scans = " UNION ALL ".join(
        f"SELECT * FROM {reader.relation('nvlink', lo, hi)} WHERE {links_sql(links)}"
        for lo, hi, links in merged
    )
    parts = ", ".join(
        f"({g}, {k}, {lo}, {hi})" for (g, k), link_spans in spans.items() for lo, hi in link_spans
    )
    return (
        f"(SELECT r.*, s.lo AS part FROM ({scans}) r JOIN (VALUES {parts}) s(g, k, lo, hi) "
        f"ON r.gpu = s.g AND r.link = s.k AND epoch_ms(r.ts) BETWEEN s.lo AND s.hi)"
    )


def _exact_faults(
    reader: StoreReader, window: Window, spans: Mapping[Link, list[Stretch]] | None, rule: Threshold
) -> list[dict[str, Any]]:
    """Per link that fired the link_errors rule or went down in its stretches: when the rule first
    fired (began), its first inactive sample (down), and its first sample in the window and the one
    after it (second; None when the window's head has fewer than two)."""
    rel = _stretched_rows(reader, window, spans)
    lags, grew = _growth_sql()
    span = f"INTERVAL {int(rule.window_s * 1000)} MILLISECONDS"
    head = window.since_ms  # the part that starts at the window's start
    return reader.sql(
        f"""WITH lagged AS (
                SELECT gpu, link, part, ts, state, {lags}, {", ".join(identifier(c) for c in LINK_ERRORS)},
                    lag(ts) OVER w AS ts_prev FROM {rel}
                WINDOW w AS (PARTITION BY gpu, link, part ORDER BY ts)),
            growth AS (SELECT gpu, link, part, ts FROM lagged WHERE ({grew}) > 0),
            counted AS (
                SELECT gpu, link, ts, count(*) OVER r AS n, min(ts) OVER r AS began FROM growth
                WINDOW r AS (
                    PARTITION BY gpu, link, part ORDER BY ts RANGE BETWEEN {span} PRECEDING AND CURRENT ROW)),
            fired AS (SELECT gpu, link, epoch_ms(arg_min(began, ts)) AS began FROM counted
                WHERE n >= {int(rule.on)} GROUP BY gpu, link),
            down AS (SELECT gpu, link, epoch_ms(min(ts)) AS down FROM lagged
                WHERE state = {NVLINK_INACTIVE} GROUP BY gpu, link),
            firsts AS (SELECT gpu, link, epoch_ms(min(ts) FILTER (WHERE part = {head})) AS first,
                epoch_ms(min(ts) FILTER (WHERE part = {head} AND ts_prev IS NOT NULL)) AS second
                FROM lagged GROUP BY gpu, link)
        SELECT gpu, link, fired.began, down.down, firsts.first, firsts.second
        FROM fired FULL JOIN down USING (gpu, link) JOIN firsts USING (gpu, link)
        ORDER BY gpu, link"""
    ).to_pylist()
