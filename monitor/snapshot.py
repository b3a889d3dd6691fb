"""`monitor snapshot`: capture the rack once (two samples, so rates are real) for cron and systemd timers.

A snapshot is a small store directory (the two frames, readable by `monitor report` and DuckDB) and a
JSON summary beside it, both published atomically; the JSON appears last, so its presence means the
snapshot is complete. A lock keeps overlapping runs apart, and old snapshots are pruned to the newest N.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pynvml

from collectors.rack import GPUS, GPUS_PER_TRAY, LINKS_PER_GPU, gpu_label
from monitor.report import summarize
from monitor.timespec import Window
from storage.atomic import build_dir, write_bytes
from storage.frame import Frame
from storage.layout import LOCK
from storage.lock import StoreLockedError, WriterLock, describe_holder
from storage.reader import StoreReader
from storage.schemas import EndpointState, EventKind, GpuState
from storage.writer import StoreWriter

if TYPE_CHECKING:
    from collectors.config import RackConfig

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNHEALTHY = 2
PREFIX = "snapshot-"
NAME = re.compile(r"^snapshot-(\d{8}T\d{6}\.\d{3}Z)(\.json)?$")
SIM_WARMUP_S = 300.0
"""The simulated rack runs this long before the first sample, so a scenario's fault is in effect."""
HW_SLOWDOWN = pynvml.nvmlClocksEventReasonHwSlowdown | pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
THERMAL = pynvml.nvmlClocksEventReasonSwThermalSlowdown | pynvml.nvmlClocksEventReasonHwThermalSlowdown


@dataclass(frozen=True)
class Thresholds:
    """What `--check` calls unhealthy beyond lost GPUs, links down and XIDs.

    Attributes:
        max_temp_c: the hottest a GPU may run.
        min_margin_c: the least distance to thermal slowdown (T.Limit) a GPU may keep.
        slowdown: whether HW slowdown, power brake or thermal slowdown reasons count.
        uncorrected_ecc: whether any volatile uncorrected ECC error counts.
    """

    max_temp_c: int = 85
    min_margin_c: int = 5
    slowdown: bool = True
    uncorrected_ecc: bool = True


@dataclass(frozen=True)
class SnapshotResult:
    """What a snapshot run wrote and found.

    Attributes:
        bundle: the snapshot's store directory.
        summary: the JSON summary's path.
        issues: what --check found wrong (empty: healthy).
        pruned: snapshots deleted to keep the newest N.
    """

    bundle: Path
    summary: Path
    issues: list[str]
    pruned: int


Capture = Callable[[], tuple[list[Frame], int]]
"""Returns the two frames and the number of GPUs the rack should report."""


def sim_capture(scenario: str, seed: int, interval_s: float, now_s: float | None = None) -> Capture:
    """Two frames of the simulated rack, `interval_s` apart on a manual clock (no real wait)."""

    def capture() -> tuple[list[Frame], int]:
        from collectors.clock import SimClock
        from collectors.sim import SimRack
        from collectors.sim.frames import SimRackFrames

        end = time.time() if now_s is None else now_s
        start = end - interval_s - SIM_WARMUP_S
        clock = SimClock(start)
        rack = SimRack(seed, scenario, clock, start=start)
        source = SimRackFrames(rack)
        clock.advance(SIM_WARMUP_S)
        first = source.poll(round(clock.now() * 1000))
        clock.advance(interval_s)
        second = source.poll(round(clock.now() * 1000))
        return [first, second], GPUS

    return capture


def config_capture(config: RackConfig, interval_s: float) -> Capture:
    """Two scrapes of a configured rack, `interval_s` apart on the wall clock."""

    def capture() -> tuple[list[Frame], int]:
        from collectors.promql_source import PromQLSource
        from collectors.scrape import ScrapeSource

        # every endpoint (or the [promql] backend's whole rack), one frame a poll
        source = PromQLSource.from_config(config) if config.promql else ScrapeSource.from_config(config)
        try:
            # A first poll opens every connection and is thrown away: a poll's rows are stamped with
            # its start, and connection set-up would put the first samples far after their stamp,
            # so increase / (stamp gap) would be divided by time the counters did not see.
            source.poll(round(time.time() * 1000))
            frames = []
            for i in range(2):
                if i:
                    time.sleep(interval_s)
                frames.append(source.poll(round(time.time() * 1000)))
        finally:
            source.close()
        return frames, GPUS_PER_TRAY * len(config.trays)

    return capture


def health(frames: Sequence[Frame], expected_gpus: int, limits: Thresholds) -> list[str]:
    """What is wrong with the rack in the last of `frames` (and XIDs in any of them); empty if healthy."""
    issues: list[str] = []
    last = frames[-1]
    gpu = last.batches.get("gpu")
    rows = gpu.to_pylist() if gpu is not None else []
    bad = [r for r in rows if r["state"] != GpuState.OK]
    if bad:
        issues.append(
            f"{len(bad)} GPU(s) not OK: "
            + ", ".join(f"{gpu_label(r['gpu'])} {GpuState(r['state']).name.lower()}" for r in bad[:8])
        )
    if len(rows) < expected_gpus:
        issues.append(f"only {len(rows)} of {expected_gpus} GPUs reported")
    ok = [r for r in rows if r["state"] == GpuState.OK]
    down = [r for r in ok if r["nvlink_up"] is not None and r["nvlink_up"] < LINKS_PER_GPU]
    if down:
        issues.append(
            "NVLink down: " + ", ".join(f"{gpu_label(r['gpu'])} {r['nvlink_up']}/18 up" for r in down[:8])
        )
    xids = [
        e
        for f in frames
        if "events" in f.batches
        for e in f.batches["events"].to_pylist()
        if e["kind"] == EventKind.XID
    ]
    if xids:
        issues.append("XID: " + ", ".join(f"{e['code']} on {_where(e['gpu'])}" for e in xids[:8]))
    checks = (
        (f"hotter than {limits.max_temp_c} C", lambda r: (r["temp_gpu_c"] or 0) > limits.max_temp_c),
        (
            f"within {limits.min_margin_c} C of thermal slowdown",
            lambda r: r["temp_margin_c"] is not None and r["temp_margin_c"] < limits.min_margin_c,
        ),
        (
            "in thermal slowdown",
            lambda r: limits.slowdown and bool((r["clocks_event_reasons"] or 0) & THERMAL),
        ),
        (
            "in HW slowdown/power brake",
            lambda r: limits.slowdown and bool((r["clocks_event_reasons"] or 0) & HW_SLOWDOWN),
        ),
        ("with uncorrected ECC errors", lambda r: limits.uncorrected_ecc and (r["ecc_uncorrected"] or 0) > 0),
    )
    for what, test in checks:
        hit = [gpu_label(r["gpu"]) for r in ok if test(r)]
        if hit:
            issues.append(f"{len(hit)} GPU(s) {what}: {', '.join(hit[:8])}")
    serving = last.batches.get("serving")
    dead = [
        r["endpoint"]
        for r in (serving.to_pylist() if serving is not None else [])
        if r["state"] not in (EndpointState.OK, EndpointState.PARTIAL)
    ]
    if dead:
        issues.append(f"{len(dead)} endpoint(s) not answering: {', '.join(dead[:8])}")
    return issues


def _rack_figures(summary: dict[str, Any]) -> dict[str, Any]:
    """The rack totals between the two samples (storage.rack_total's rule), each with what it covers.

    Tokens/s is each series' increase between the two samples over the time between their stamps,
    summed (monitor.report); power is the second sample's, over the GPUs that reported in it; NVLink
    is TX+RX, each link's rate between the two samples summed as the live header sums it
    (monitor.report_nvlink), over the GPUs it covers.
    """
    serving = summary.get("serving") or {}
    power = summary["power_kw"]
    nvlink = summary["nvlink"]
    return {
        "nvlink_tb_s": nvlink["tb_s"],
        "nvlink_covered": nvlink["covered"],
        "nvlink_implausible_links": nvlink["implausible_links"],
        "tokens_per_s": serving.get("tokens_per_s"),
        "tokens_covered": serving.get("tokens_covered"),
        "endpoints": serving.get("tokens_of"),
        "power_kw": power["last"],
        "power_covered": power["last_covered"],
        "gpus": power["of"],
    }


def _where(gpu: int | None) -> str:
    return gpu_label(gpu) if gpu is not None else "the rack"


def _name(ts_ms: int) -> str:
    stamp = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return f"{PREFIX}{stamp:%Y%m%dT%H%M%S}.{ts_ms % 1000:03d}Z"


def prune(out: Path, keep: int) -> int:
    """Delete all but the newest `keep` snapshots in `out` (only names this tool writes); return how many."""
    stamps: set[str] = set()
    for path in out.iterdir():
        match = NAME.match(path.name)
        if match and not path.is_symlink():
            stamps.add(match.group(1))
    doomed = sorted(stamps)[: max(0, len(stamps) - keep)]
    for stamp in doomed:
        # The summary goes first: a bundle without its summary reads as incomplete, never the reverse.
        (out / f"{PREFIX}{stamp}.json").unlink(missing_ok=True)
        shutil.rmtree(out / f"{PREFIX}{stamp}", ignore_errors=True)
    return len(doomed)


def snapshot(
    out: Path, capture: Capture, *, keep: int = 96, limits: Thresholds | None = None, source: str = "sim"
) -> SnapshotResult:
    """Capture once into `out` (created if missing), prune to `keep`, and say what --check would find.

    Raises:
        StoreLockedError: another snapshot run holds `out`.
        OSError: `out` cannot be written.
    """
    limits = limits or Thresholds()
    if out.is_symlink():
        raise OSError(f"{out} is a symlink; refusing to write through it")
    out.mkdir(parents=True, exist_ok=True, mode=0o755)
    try:
        lock = WriterLock(out)
    except StoreLockedError:
        raise StoreLockedError(
            f"another snapshot run ({describe_holder(out / LOCK)}) is writing to {out}; try again later"
        ) from None
    try:
        frames, expected = capture()
        name = _name(frames[-1].ts_ms)

        def fill(root: Path) -> None:
            with StoreWriter(root, compaction="off", flush_interval_s=3600, grace_s=0.0) as writer:
                for frame in frames:
                    writer.append(frame)
            (root / LOCK).unlink(missing_ok=True)

        bundle = out / name
        build_dir(bundle, force=False, fill=fill)
        issues = health(frames, expected, limits)
        with StoreReader(bundle) as reader:
            summary = summarize(reader, Window(frames[0].ts_ms, frames[-1].ts_ms))
        doc: dict[str, Any] = {
            "snapshot": name,
            "source": source,
            "bundle": name,
            "healthy": not issues,
            "issues": issues,
            "expected_gpus": expected,
            "thresholds": asdict(limits),
            "rack": _rack_figures(summary),
            "summary": summary,
        }
        path = out / f"{name}.json"
        write_bytes(path, json.dumps(doc, indent=1, default=str).encode() + b"\n")
        pruned = prune(out, keep)
    finally:
        lock.release()
    return SnapshotResult(bundle, path, issues, pruned)
