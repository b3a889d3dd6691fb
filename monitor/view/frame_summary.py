"""What the snapshot builder keeps of each frame and of each pair of consecutive frames.

One frame reduces to its per-GPU rows, its nvlink rows and rack power (FrameSummary); two consecutive
frames reduce to their NVLink rates and the error counters' increases per GPU, link and switch tray
(PairSummary). These are the units monitor.view.builder caches, so a new tick costs one frame's work.
The link-trouble list and the NVLink sparkline are read off a window of pairs here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from collectors.rack import CHIPS_PER_SWITCH_TRAY, GPUS, LINKS_PER_GPU, SWITCH_TRAYS
from monitor.view.model import LinkTrouble
from monitor.view.nvlink import (
    NVLINK_INACTIVE,
    LinkFrame,
    NvlinkRates,
    error_growth,
    link_frame,
    nvlink_rates,
)
from monitor.view.totals import ServingCounters, serving_counters
from storage.frame import Frame
from storage.increase import step
from storage.rack_total import RackTotal, power_total_kw


@dataclass(frozen=True, slots=True)
class FrameSummary:
    """What the builder keeps of one frame."""

    ts_ms: int
    rows: dict[int, dict[str, Any]]
    links: LinkFrame | None
    """The frame's nvlink rows (monitor.view.nvlink)."""
    power: RackTotal
    """Rack power at this tick over the GPUs that reported (storage.rack_total)."""
    serving: ServingCounters
    """Per serving series (endpoint, engine): (state, generation_tokens)."""
    thin: bool = False
    """Thinned (thin_frame): rows hold only each GPU's state, and links are dropped."""


@dataclass(frozen=True, slots=True)
class PairSummary:
    """Rates and increases between two consecutive frames."""

    nvlink: NvlinkRates | None
    """NVLink rates per link, GPU, switch chip and rack: the one computation (monitor.view.nvlink)."""
    gpu_errors: dict[int, int | None]
    switch_errors: tuple[int | None, ...]
    link_growth: dict[int, int]
    """Links (gpu * 18 + link) whose error counters grew, with the growth."""

    @property
    def rack_tbps(self) -> float | None:
        """The rack's NVLink total (TB/s) over this pair."""
        return self.nvlink.rack_tbps if self.nvlink else None


def sum_known(values: Sequence[int | None]) -> int | None:
    """The sum of the known values, or None when none is known."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


ECC_COLUMNS = ("ecc_corrected", "ecc_uncorrected")


def _int_step(old: int | None, new: int | None) -> int | None:
    """An integer counter's increase by the one rule (storage.increase.step)."""
    grown = step(old, new)
    return None if grown is None else int(grown)


def summarise_frame(frame: Frame) -> FrameSummary:
    """Reduce one frame to per-GPU rows, its nvlink rows and rack power."""
    # Row times equal the frame's tick, and converting 72 timestamps to datetimes is wasted work.
    gpu = frame.table("gpu").drop_columns(["ts"]).to_pydict()
    names = list(gpu)
    at = names.index("gpu")
    rows = {
        int(values[at]): dict(zip(names, values, strict=True)) for values in zip(*gpu.values(), strict=True)
    }
    return FrameSummary(
        ts_ms=frame.ts_ms,
        rows=rows,
        links=link_frame(frame),
        power=power_total_kw(((r["state"], r.get("power_mw")) for r in rows.values()), GPUS),
        serving=serving_counters(frame),
    )


def thin_frame(summary: FrameSummary) -> FrameSummary:
    """What the builder keeps of a frame past the freshness window: each GPU's state, power, serving.

    An old frame's rows matter only for whether a GPU reported (the age of a stale cell) and its links
    only for the pair with the next frame, which is cached: a full summary is ~460 KB for the rack
    (rows ~100 KB, links ~360 KB), a thinned one ~15 KB.
    """
    if summary.thin:
        return summary
    rows = {index: {"state": row["state"]} for index, row in summary.rows.items()}
    return replace(summary, rows=rows, links=None, thin=True)


def thin_pair(pair: PairSummary) -> PairSummary:
    """A pair without its per-link rates (~70 KB for the rack): only the newest pair's are drawn."""
    if pair.nvlink is None or not pair.nvlink.links:
        return pair
    return replace(pair, nvlink=replace(pair.nvlink, links={}))


def summarise_pair(old: FrameSummary, new: FrameSummary) -> PairSummary:
    """NVLink rates, per-GPU error increases (ECC + NVLink) and per-switch-tray errors between two frames.

    Every counter is its own series: each one's increase is taken, then they are summed.
    """
    link_growth: dict[int, int] = {}
    if old.links is not None and new.links is not None:
        link_growth = error_growth(old.links, new.links)
    gpu_errors: dict[int, int | None] = {}
    for index, row in new.rows.items():
        prev = old.rows.get(index)
        if prev is None:
            continue
        parts = [_int_step(prev.get(c), row.get(c)) for c in ECC_COLUMNS]
        if new.links is not None and old.links is not None:
            first = index * LINKS_PER_GPU
            if any(first + k in new.links.errors for k in range(LINKS_PER_GPU)):
                parts.append(sum(link_growth.get(first + k, 0) for k in range(LINKS_PER_GPU)))
        gpu_errors[index] = sum_known(parts)
    switch_err: list[int | None] = [None] * SWITCH_TRAYS
    if new.links is not None and old.links is not None:
        for key in new.links.errors:
            if key in old.links.errors:
                tray = (key % LINKS_PER_GPU) // CHIPS_PER_SWITCH_TRAY
                switch_err[tray] = (switch_err[tray] or 0) + link_growth.get(key, 0)
    rates = nvlink_rates(old.links, new.links) if old.links is not None and new.links is not None else None
    return PairSummary(rates, gpu_errors, tuple(switch_err), link_growth)


def link_trouble(newest: FrameSummary, window: Sequence[PairSummary]) -> tuple[LinkTrouble, ...]:
    """The links the newest frame reports down, and those whose error counters grew within the window."""
    grown: dict[int, list[int]] = {}
    for pair in window:
        for key, growth in pair.link_growth.items():
            grown.setdefault(key, []).append(growth)
    states = newest.links.state if newest.links is not None else {}
    down = {key for key, state in states.items() if state == NVLINK_INACTIVE}
    return tuple(
        LinkTrouble(
            *divmod(key, LINKS_PER_GPU), key in down, len(grown.get(key, ())), sum(grown.get(key, ()))
        )
        for key in sorted(down | grown.keys())
    )


def nvlink_history(pairs: Sequence[PairSummary]) -> tuple[float, ...]:
    """Rack NVLink TB/s per pair, leaving out pairs that cover fewer GPUs than the best-covered one."""
    rated = [p.nvlink for p in pairs if p.nvlink is not None and p.nvlink.rack_tbps is not None]
    most = max((r.gpus for r in rated), default=0)
    return tuple(r.rack_tbps for r in rated if r.gpus == most)  # type: ignore[misc]
