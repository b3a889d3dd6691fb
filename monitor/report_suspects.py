"""`monitor report`'s suspects: the GPUs, trays and links that stand out, each with when it began.

One computation: monitor.report puts its results in the summary, and the text, Markdown, JSON and
report.html all print them from there. GPUs are judged against their peers with median and MAD
(collectors.robust), which one bad GPU cannot drag along with it; links by the live alert rules.

An evidence's onset is the first sample of the first run of RUN samples in a row past its line (one
noisy sample is no onset): a clock below the midpoint between the peers' median and the suspect's mean,
a temperature above the hottest peer's peak, tokens/s below the midpoint between the peers' median and
the suspect's rate (per collection step, through the reader's one counter rule), a slowdown reason set.
A lost GPU's onset is its first LOST sample. Links' onsets are found by monitor.report_links (the first
error growth of the first window in which the live alert rule would fire, or the first sample in state
inactive, whichever is earlier); this module turns each into a suspect.

An onset found at the first point its series has in the window (a GPU's first sample, the first
tokens/s step, a link's first sample that can show growth) is `at_start`: the fault began at or before
the window's start, and the report says so rather than give the window's edge as the time it began.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from collectors.rack import GPUS_PER_TRAY, gpu_label
from collectors.robust import robust_high, robust_low
from monitor.timespec import Window, iso
from storage.reader import StoreReader
from storage.schemas import GpuState

RUN = 3
"""Samples in a row past an evidence's line before it counts as begun."""
MAX_STEPS = 86_400
"""The most tokens/s steps an onset is looked for in (1 s steps over a day)."""

ERROR_NAMES = {
    "symbol_errors": ("symbol error", "symbol errors"),
    "rx_errors": ("rx error", "rx errors"),
    "recovery": ("recovery", "recoveries"),
    "recovery_failed": ("failed recovery", "failed recoveries"),
}
Line = tuple[str, float]
"""An evidence's line: ('<' or '>', the value a sample must be past)."""
Summary = dict[str, Any]
Flags = dict[int, list[tuple[str, str]]]
"""Per GPU, its evidences as (kind, text)."""


class Onset(NamedTuple):
    """When an evidence began (epoch ms), and whether that is its series' first point in the window."""

    ms: int
    at_start: bool


def first_run(points: Iterable[tuple[int, bool]], run: int = RUN) -> Onset | None:
    """The first of `run` consecutive True samples (points oldest first), else None; at_start when that
    run starts at the very first point (the evidence was already there when the series began)."""
    start, count, first = None, 0, None
    for t, past in points:
        first = t if first is None else first
        if not past:
            start, count = None, 0
            continue
        start = t if start is None else start
        count += 1
        if count >= run:
            return Onset(start, start == first)
    return None


def _past(value: float | None, line: Line) -> bool:
    if value is None:
        return False
    op, at = line
    return value < at if op == "<" else value > at


def gpu_onsets(
    reader: StoreReader, window: Window, lines: Mapping[int, Mapping[str, Line]], slowdown_mask: int
) -> dict[int, dict[str, Onset]]:
    """Per GPU, the onset of each of its evidences: 'clock', 'temp', 'slowdown', 'lost'.

    Args:
        lines: per GPU, the line of its 'clock' and 'temp' evidence (others need none).
        slowdown_mask: the clock-event reasons that count as a slowdown.
    """
    if not lines:
        return {}
    rel = reader.relation("gpu", window.since_ms, window.until_ms)
    wanted = ", ".join(str(int(g)) for g in lines)
    rows = reader.sql(
        f"""SELECT gpu, epoch_ms(ts) AS t, sm_clock_mhz AS clock, temp_gpu_c AS temp,
            (clocks_event_reasons & {slowdown_mask}) != 0 AS slowdown, state = {int(GpuState.LOST)} AS lost
        FROM {rel} WHERE gpu IN ({wanted}) ORDER BY gpu, t"""
    ).to_pylist()
    per_gpu: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        per_gpu.setdefault(r["gpu"], []).append(r)
    out: dict[int, dict[str, Onset]] = {}
    for g, samples in per_gpu.items():
        found: dict[str, Onset | None] = {
            kind: first_run((r["t"], _past(r[kind], line)) for r in samples)
            for kind, line in lines[g].items()
        }
        found["slowdown"] = first_run((r["t"], bool(r["slowdown"])) for r in samples)
        found["lost"] = first_run(((r["t"], bool(r["lost"])) for r in samples), run=1)
        out[g] = {k: t for k, t in found.items() if t is not None}
    return out


def tokens_onsets(
    reader: StoreReader, window: Window, placement: Mapping[str, list[int]], lines: Mapping[int, float]
) -> dict[int, Onset]:
    """Per GPU, when its share of its servers' generated tokens/s fell below its line (epoch ms).

    The share is taken per step as monitor.report takes it over the window: each server's rate (the
    reader's counter rule, per series, then summed) split evenly over its GPUs. Steps are 1 s up to a
    day's window (onsets to the second), whole seconds of 1/MAX_STEPS of a longer one.
    """
    if not lines:
        return {}
    step_ms = max(1000, -(-(window.until_ms - window.since_ms) // MAX_STEPS // 1000) * 1000)
    rated = reader.rate(
        "serving", "generation_tokens", window.since_ms, window.until_ms, step_ms=step_ms
    ).to_pylist()
    share: dict[int, dict[int, float]] = {g: {} for g in lines}
    for r in rated:
        gpus = placement.get(r["endpoint"], [])
        if r["rate"] is None or not gpus:
            continue
        t = int(r["ts"].timestamp() * 1000)
        for g in gpus:
            if g in share:
                share[g][t] = share[g].get(t, 0.0) + r["rate"] / len(gpus)
    out = {}
    for g, steps in share.items():
        onset = first_run((t, v < lines[g]) for t, v in sorted(steps.items()))
        if onset is not None:
            out[g] = onset
    return out


def _clock(ms: int | None) -> str:
    """'15:04:21Z' (the window's day is in the report's title)."""
    return "" if ms is None else iso(ms)[11:]


def _from(ms: int, at_start: bool) -> str:
    """'from 15:04:21Z', or 'from 15:00:00Z (the window's start) or before' when it was there already."""
    return f"from {_clock(ms)} (the window's start) or before" if at_start else f"from {_clock(ms)}"


def _flag_gpus(
    gpu_side: Summary, serving: Summary | None
) -> tuple[Flags, dict[int, dict[str, Line]], dict[int, float]]:
    """The GPUs that stand out, each evidence as (kind, text); the lines their onsets are found by."""
    per_gpu = {r["gpu"]: r for r in gpu_side["per_gpu"]}
    flagged: Flags = {}
    lines: dict[int, dict[str, Line]] = {}
    token_lines: dict[int, float] = {}

    def flag(found: Iterable[int], kind: str, why: str) -> None:
        for g in found:
            flagged.setdefault(g, []).append((kind, why.format(**per_gpu.get(g, {}), g=g)))

    if serving is not None:
        tok = serving["per_gpu_tokens_per_s"]
        median = statistics.median(tok.values()) if tok else 0.0
        for g in robust_low(tok):
            flagged.setdefault(g, []).append(
                ("tokens", f"{tok[g]:,.0f} tok/s against a median of {median:,.0f}")
            )
            token_lines[g] = (median + tok[g]) / 2
    alive = {g: r for g, r in per_gpu.items() if r["clock"] is not None}
    clocks = {g: r["clock"] for g, r in alive.items()}
    slow_clocks = robust_low(clocks)
    flag(slow_clocks, "clock", "SM clock {clock:,.0f} MHz mean")
    peers = [c for g, c in clocks.items() if g not in slow_clocks]
    for g in slow_clocks:
        lines.setdefault(g, {})["clock"] = ("<", (statistics.median(peers) + clocks[g]) / 2)
    temps = {g: r["temp_max"] for g, r in alive.items() if r["temp_max"] is not None}
    hot = robust_high(temps)
    flag(hot, "temp", "up to {temp_max} C")
    hottest_peer = max((t for g, t in temps.items() if g not in hot), default=None)
    for g in hot:
        if hottest_peer is not None:
            lines.setdefault(g, {})["temp"] = (">", hottest_peer)
    slow = {g: r["slowdown"] for g, r in alive.items() if r["slowdown"] is not None}
    usual = statistics.median(slow.values()) if slow else 0.0
    flag(
        [g for g, s in slow.items() if s >= 0.2 and usual < 0.05],
        "slowdown",
        "slowed down {slowdown:.0%} of the time",
    )
    flag([g for g, r in per_gpu.items() if r["lost"]], "lost", "lost (fell off the bus) in {lost} samples")
    return flagged, lines, token_lines


def suspects(
    reader: StoreReader,
    window: Window,
    gpu_side: Summary,
    serving: Summary | None,
    slowdown_mask: int,
    links: list[Summary],
) -> list[Summary]:
    """GPUs (or whole trays) that stand out against their peers and links at fault (link_faults), each
    with its evidence, its element and its onset (ISO, to the second), earliest first."""
    flagged, lines, token_lines = _flag_gpus(gpu_side, serving)
    onsets = gpu_onsets(reader, window, {g: lines.get(g, {}) for g in flagged}, slowdown_mask)
    placement = serving["placement"] if serving is not None else {}
    for g, t in tokens_onsets(reader, window, placement, token_lines).items():
        onsets.setdefault(g, {})["tokens"] = t
    per_gpu = {r["gpu"]: r for r in gpu_side["per_gpu"]}
    out: list[Summary] = []
    trays: dict[int, list[int]] = {}
    for g in flagged:
        trays.setdefault(g // GPUS_PER_TRAY + 1, []).append(g)
    for tray, gpus in sorted(trays.items()):
        found = [
            (g, kind, text, onsets.get(g, {}).get(kind)) for g in sorted(gpus) for kind, text in flagged[g]
        ]
        if len(gpus) >= GPUS_PER_TRAY - 1:
            thermal = any(per_gpu.get(g, {}).get("thermal") for g in gpus)
            evidence = sorted({text for _, _, text, _ in found})
            why = "thermal slowdown on " if thermal else ""
            out.append(
                _suspect(
                    {"kind": "tray", "tray": tray, "gpus": sorted(gpus), "label": f"T{tray:02d}"},
                    f"tray {tray}",
                    f"{why}{len(gpus)} of {GPUS_PER_TRAY} GPUs: " + "; ".join(evidence[:4]),
                    [(f"{gpu_label(g)} {kind}", t) for g, kind, _, t in found],
                )
            )
            continue
        for g in sorted(gpus):
            mine = [(text, t) for h, _, text, t in found if h == g]
            evidence = "; ".join(text + (f" ({_from(*t)})" if t is not None else "") for text, t in mine)
            out.append(
                _suspect(
                    {"kind": "gpu", "gpu": g, "tray": tray, "label": gpu_label(g)},
                    gpu_label(g),
                    evidence,
                    mine,
                )
            )
    out += [_link_suspect(link) for link in links]
    return sorted(out, key=lambda s: (s["onset"] is None, s["onset"] or ""))


def _suspect(base: Summary, element: str, evidence: str, onsets: list[tuple[str, Onset | None]]) -> Summary:
    """A suspect's dict: its element, evidence and earliest onset (and which evidence began first).

    onset_at_start: some evidence was there from its first sample, so the suspect began at or before
    the window's start (its onset is then that start, not the time it began).
    """
    known = [(t.ms, what) for what, t in onsets if t is not None]
    first = min(known) if known else None
    return base | {
        "element": element,
        "onset": iso(first[0]) if first else None,
        "onset_ms": first[0] if first else None,
        "onset_at_start": any(t.at_start for _, t in onsets if t is not None),
        "onset_of": first[1] if first else None,
        "evidence": evidence,
    }


def _link_suspect(link: Summary) -> Summary:
    errors = link["errors"]
    parts = [f"{errors[c]:,.0f} {names[errors[c] != 1]}" for c, names in ERROR_NAMES.items() if errors.get(c)]
    grew = f"errors climbing {_from(link['onset_ms'], link['at_start'])}: {', '.join(parts)}" if parts else ""
    down = f"down from {_clock(link['down_ms'])}" if link["down_ms"] is not None else ""
    return {
        "kind": "link",
        "gpu": link["gpu"],
        "link": link["link"],
        "tray": link["gpu"] // GPUS_PER_TRAY + 1,
        "label": link["label"],
        "element": link["label"],
        "onset": iso(link["onset_ms"]),
        "onset_ms": link["onset_ms"],
        "onset_at_start": link["at_start"],
        "onset_of": "link down" if link["onset_ms"] == link["down_ms"] else "link errors",
        "evidence": "; ".join(p for p in (grew, down) if p),
    }
