"""Deterministic rack frames for the TUI tests, built with storage.frame.batch_from_columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from collectors.rack import GPUS, LINKS_PER_GPU, gpu_place
from storage.frame import Frame, batch_from_columns
from storage.schemas import EventKind, GpuState

T0_MS = 1_767_268_800_000
"""2026-01-01T12:00:00Z: every test frame is stamped from here, so snapshots never see a clock."""

LINK_KIB_PER_TICK = 50_000
"""Each link of GPU i moves (i + 1) * this many KiB per direction per tick."""


def gpu_values(i: int) -> dict[str, Any]:
    """Fixed, distinct, in-range readings for rack GPU i (every metric bucket gets used)."""
    return {
        "util_gpu_pct": (i * 7) % 101,
        "util_mem_pct": (i * 3) % 101,
        "mem_used_mib": 2_000 + i * 3_900,
        "mem_total_mib": 284_208,
        "power_mw": 180_000 + i * 17_000,
        "power_limit_mw": 1_400_000,
        "temp_gpu_c": 28 + (i * 5) % 60,
        "temp_mem_c": 30 + (i * 5) % 60,
        "temp_margin_c": 55 - (i * 5) % 50,
        "sm_clock_mhz": 900 + i * 16,
        "mem_clock_mhz": 3_996,
        "clocks_event_reasons": 0,
        "pstate": 0,
        "ecc_corrected": 0,
        "ecc_uncorrected": 0,
        "nvlink_up": LINKS_PER_GPU,
    }


NULLED = tuple(gpu_values(0))
"""The metric columns a LOST / STALE row leaves null."""


def rack_frame(
    tick: int,
    *,
    interval_ms: int = 1000,
    states: Mapping[int, GpuState] | None = None,
    missing: Sequence[int] = (),
    overrides: Mapping[int, Mapping[str, Any]] | None = None,
    link_overrides: Mapping[tuple[int, int], Mapping[str, Any]] | None = None,
    events: Sequence[Mapping[str, Any]] = (),
    nvlink: bool = True,
) -> Frame:
    """One rack tick at T0 + tick * interval with deterministic readings.

    Args:
        tick: the tick number; counters grow linearly with it.
        states: GPUs whose row has another GpuState (LOST / STALE rows get null metrics).
        missing: GPUs with no row at all in this frame (their tray's source did not answer).
        overrides: per-GPU column values applied last.
        link_overrides: per (gpu, link) nvlink column values applied last.
        events: rows of the events table (ts is filled in).
        nvlink: whether to include the 1,296-row nvlink table.
    """
    ts = T0_MS + tick * interval_ms
    states = states or {}
    overrides = overrides or {}
    link_overrides = link_overrides or {}
    rows = []
    for i in range(GPUS):
        if i in missing:
            continue
        tray, module = gpu_place(i)
        state = states.get(i, GpuState.OK)
        row: dict[str, Any] = {
            "ts": ts,
            "gpu": i,
            "uuid": f"GPU-{i:08x}-0000-4000-8000-{tray:04x}{module:08x}",
            "tray": tray,
            "state": int(state),
        }
        if state in (GpuState.OK, GpuState.ERROR):
            row.update(gpu_values(i))
            per_link = (i + 1) * LINK_KIB_PER_TICK * tick
            row["nvlink_tx_kib"] = per_link * LINKS_PER_GPU
            row["nvlink_rx_kib"] = per_link * LINKS_PER_GPU
        row.update(overrides.get(i, {}))
        rows.append(row)
    batches = {"gpu": batch_from_columns("gpu", _columns(rows))}
    if nvlink:
        links = []
        for row in rows:
            i = row["gpu"]
            for link in range(LINKS_PER_GPU):
                up = row["state"] == GpuState.OK
                per_link = (i + 1) * LINK_KIB_PER_TICK * tick
                entry: dict[str, Any] = {
                    "ts": ts,
                    "gpu": i,
                    "link": link,
                    "state": 1 if up else None,
                    "tx_kib": per_link if up else None,
                    "rx_kib": per_link if up else None,
                    "rx_errors": 0 if up else None,
                    "symbol_errors": 0 if up else None,
                    "recovery": 0 if up else None,
                    "recovery_failed": 0 if up else None,
                }
                entry.update(link_overrides.get((i, link), {}))
                links.append(entry)
        batches["nvlink"] = batch_from_columns("nvlink", _columns(links))
    if events:
        batches["events"] = batch_from_columns("events", _columns([{"ts": ts, **e} for e in events]))
    return Frame(ts_ms=ts, batches=batches)


def _columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Row dicts to column lists (keys missing from a row become null)."""
    names: list[str] = []
    for row in rows:
        names.extend(k for k in row if k not in names)
    return {name: [row.get(name) for row in rows] for name in names}


LOST_GPU = 61
"""T16.G2: falls off the bus in the scenario frames."""
STALE_TRAY_GPUS = (8, 9, 10, 11)
"""Tray 3's source stops answering in the scenario frames."""


def scenario_frames(ticks: int = 6) -> list[Frame]:
    """A short incident: T16.G2 is lost with an XID 79, tray 3 goes silent, link 4 of T05.G1 errs."""
    frames = []
    for t in range(ticks):
        last = t == ticks - 1
        frames.append(
            rack_frame(
                t,
                states={LOST_GPU: GpuState.LOST} if last else None,
                missing=STALE_TRAY_GPUS if t >= ticks - 4 else (),
                link_overrides={(16, 4): {"rx_errors": 3 * t}},
                overrides={20: {"clocks_event_reasons": 0x4}} if last else None,
                events=(
                    [
                        {"kind": EventKind.XID, "gpu": LOST_GPU, "code": 79, "source": "tray16"},
                        {"kind": EventKind.GPU_LOST, "gpu": LOST_GPU, "source": "tray16"},
                        {
                            "kind": EventKind.CLOCKS_EVENT,
                            "gpu": 20,
                            "code": 0x4,
                            "source": "tray06",
                        },
                    ]
                    if last
                    else []
                ),
            )
        )
    return frames
