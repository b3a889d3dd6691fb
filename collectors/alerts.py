"""The alert engine: threshold rules with hysteresis and a minimum duration, evaluated on each rack frame.

Pure (no UI, no I/O). `AlertEngine.evaluate(frame)` returns the alert / alert_cleared events the frame
caused; collectors.alert_recorder puts them into the frames the store records.

Event columns: kind alert | alert_cleared, code = the rule's id (AlertRule.code), gpu / link where the
rule is per GPU or per link, source = the endpoint or tray for source-level rules, detail = one line.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from collectors.alert_rules import (
    GPU_IDLE_REASON,
    RULE_DIRECTION,
    STRAGGLER_MIN_RELATIVE,
    STRAGGLER_TOKENS_WINDOW_S,
    XID_REMAP_FAILURES,
    AlertRule,
    AlertRules,
    power_detail,
    temp_margin_detail,
    versus_text,
)
from collectors.rack import gpu_label
from collectors.robust import robust_low, robust_median
from collectors.tray_drift import Observation, TrayDrift
from storage.frame import Frame
from storage.increase import SlidingRate, rate, step
from storage.schemas import NVLINK_ERRORS, EndpointState, EventKind, GpuState

NVLINK_ACTIVE = 1
NVLINK_INACTIVE = 0
LINK_ERROR_COLUMNS = NVLINK_ERRORS

Key = tuple[Any, ...]


@dataclass
class _State:
    """One watched thing's hysteresis state."""

    since_ms: int | None = None
    """When the value first stood past `on` (None when it does not)."""
    active: bool = False


@dataclass
class _Window:
    """Sparse growth of a few counter series (e.g. one link's error counters): (ts, increase) of the
    samples in which any of them grew, plus each series' last value."""

    last: list[int | None]
    growth: deque[tuple[int, int]] = field(default_factory=deque)

    def add(self, ts: int, values: tuple[int | None, ...], window_ms: int) -> tuple[int, int]:
        """Record a sample; return (samples that grew, total growth) within the window.

        Each series is increased on its own with the one reset rule (storage.increase): after a drop only
        what the counter shows is growth, so a reset to 0 adds nothing and the window empties after the
        last real growth.
        """
        if not self.growth and list(values) == self.last:
            return 0, 0  # the common clean link: nothing grew, nothing to expire
        grown = 0
        for i, value in enumerate(values):
            if value is not None:
                grown += int(step(self.last[i], value) or 0)
                self.last[i] = value
        if grown:
            self.growth.append((ts, grown))
        while self.growth and self.growth[0][0] <= ts - window_ms:
            self.growth.popleft()
        return len(self.growth), sum(g for _, g in self.growth)


class AlertEngine:
    """Evaluates AlertRules on each rack frame (oldest first), tracking per-thing hysteresis state."""

    def __init__(self, rules: AlertRules | None = None) -> None:
        """Watch with `rules` (the defaults when None)."""
        self.rules = rules or AlertRules()
        self._states: dict[tuple[str, Key], _State] = {}
        self._links: dict[tuple[int, int], _Window] = {}
        self._ecc: dict[int, _Window] = {}
        self._remaps: dict[int, deque[tuple[int, int]]] = {}
        self._xids: dict[int, deque[int]] = {}
        self._tokens: dict[str, SlidingRate] = {}
        self._served: dict[str, deque[tuple[int, int]]] = {}
        self._drift = TrayDrift(self.rules.tray_drift.window_s)

    @property
    def active(self) -> list[tuple[str, Key]]:
        """The (rule name, key) of every alert now firing."""
        return [k for k, s in self._states.items() if s.active]

    def evaluate(self, frame: Frame) -> list[dict[str, Any]]:
        """The events rows (without ts) that `frame` causes: alerts that fire and alerts that clear."""
        out: list[dict[str, Any]] = []
        ts = frame.ts_ms
        for name, key, value, where, detail in self._observations(frame):
            out.extend(self._step(name, key, value, ts, where, detail))
        return out

    def _step(
        self, name: str, key: Key, value: float, ts: int, where: dict[str, Any], detail: str
    ) -> list[dict[str, Any]]:
        rule = self.rules.rule(name)
        high = RULE_DIRECTION[name] == "high"
        past_on = value >= rule.on if high else value <= rule.on
        back = value <= rule.off if high else value >= rule.off
        state = self._states.setdefault((name, key), _State())
        if not state.active:
            if not past_on:
                state.since_ms = None
                return []
            if state.since_ms is None:
                state.since_ms = ts
            if ts - state.since_ms < rule.for_s * 1000:
                return []
            state.active = True
            return [
                {"kind": EventKind.ALERT, "code": int(AlertRule[name.upper()]), **where, "detail": detail}
            ]
        if back:
            state.active = False
            state.since_ms = None
            return [
                {
                    "kind": EventKind.ALERT_CLEARED,
                    "code": int(AlertRule[name.upper()]),
                    **where,
                    "detail": detail,
                }
            ]
        return []

    def _observations(self, frame: Frame) -> Iterable[Observation]:
        """(rule, key, value, event columns, detail) for everything the enabled rules watch."""
        r = self.rules
        if frame.table("gpu").num_rows:
            yield from self._gpu_observations(frame)
        if r.xid.enabled:
            yield from self._xid_observations(frame)
        if r.row_remap_failure.enabled:
            yield from self._remap_observations(frame)
        nv = frame.table("nvlink")
        if nv.num_rows and (r.links_down.enabled or r.link_errors.enabled):
            yield from self._link_observations(frame)
        serving = frame.table("serving")
        if serving.num_rows:
            rows = serving.select(
                ["endpoint", "gpus", "state", "generation_tokens", "running", "waiting"]
            ).to_pylist()
            yield from self._serving_observations(frame.ts_ms, rows)

    def _gpu_observations(self, frame: Frame) -> Iterable[Observation]:
        """The gpu table's rules: ECC, clock stragglers, tray drift, temperature, power, silent trays."""
        r = self.rules
        cols = (
            frame.table("gpu")
            .select(["gpu", "tray", "state", "temp_margin_c", "temp_gpu_c", "power_mw", "power_limit_mw"])
            .to_pydict()
        )
        stale_trays: dict[int, bool] = {}
        if r.ecc_uncorrected.enabled:
            yield from self._ecc_observations(frame)
        if r.straggler.enabled:
            yield from self._straggler_observations(frame)
        if r.tray_drift.enabled:
            yield from self._drift.observe(frame)
        for g, tray, state, margin, temp, power, limit in zip(*cols.values(), strict=True):
            where = {"gpu": g}
            if state == GpuState.STALE:
                stale_trays[tray] = True
                continue
            stale_trays.setdefault(tray, False)
            if r.temp_margin.enabled and margin is not None:
                yield "temp_margin", (g,), margin, where, temp_margin_detail(margin, temp)
            if r.power.enabled and power is not None and limit:
                yield "power", (g,), power / limit, where, power_detail(power, limit)
        if r.stale.enabled:
            for tray, stale in stale_trays.items():
                yield "stale", ("tray", tray), float(stale), {"source": f"tray {tray}"}, _stale(stale)

    def _serving_observations(self, ts: int, rows: list[dict[str, Any]]) -> Iterable[Observation]:
        """The serving table's rules: tokens/s stragglers, silent endpoints, tokens/s drops."""
        r = self.rules
        if r.straggler.enabled:
            yield from self._tokens_straggler_observations(ts, rows)
        for row in rows:
            name = row["endpoint"]
            # a PARTIAL page answered (some engine's series NaN or missing): it is not a silent server
            ok = row["state"] in _ANSWERED
            if r.stale.enabled:
                yield "stale", ("endpoint", name), float(not ok), {"source": name}, _stale(not ok)
            if r.tokens_drop.enabled and ok and row["generation_tokens"] is not None:
                drop = self._tokens_drop(name, ts, float(row["generation_tokens"]))
                if drop is not None:
                    yield "tokens_drop", (name,), drop[0], {"source": name}, drop[1]

    def _ecc_observations(self, frame: Frame) -> Iterable[Observation]:
        """Uncorrectable ECC errors each GPU gained within the window (its own rule: one is too many)."""
        window_s = self.rules.ecc_uncorrected.window_s
        cols = frame.table("gpu").select(["gpu", "state", "ecc_uncorrected"]).to_pydict()
        for g, state, value in zip(*cols.values(), strict=True):
            if state != GpuState.OK or value is None:
                continue
            window = self._ecc.get(g)
            if window is None:
                self._ecc[g] = _Window(last=[value])  # the baseline: errors before we looked are history
                continue
            _, grown = window.add(frame.ts_ms, (value,), int(window_s * 1000))
            if not grown and ("ecc_uncorrected", (g,)) not in self._states:
                continue
            detail = f"uncorrectable ECC +{grown} in {window_s:.0f} s (total {value})"
            yield "ecc_uncorrected", (g,), float(grown), {"gpu": g}, detail

    def _remap_observations(self, frame: Frame) -> Iterable[Observation]:
        """Row-remapping / retirement failures (XID 64, 157) of each GPU within the window."""
        window_s = self.rules.row_remap_failure.window_s
        events = frame.table("events")
        if events.num_rows:
            for row in events.select(["kind", "gpu", "code"]).to_pylist():
                if (
                    row["kind"] == EventKind.XID
                    and row["gpu"] is not None
                    and row["code"] in XID_REMAP_FAILURES
                ):
                    self._remaps.setdefault(row["gpu"], deque()).append((frame.ts_ms, row["code"]))
        for g, seen in list(self._remaps.items()):
            while seen and seen[0][0] <= frame.ts_ms - window_s * 1000:
                seen.popleft()
            xids = ",".join(sorted({str(code) for _, code in seen})) or "none"
            detail = f"{len(seen)} remap failure(s) (XID {xids}) in {window_s:.0f} s"
            yield "row_remap_failure", (g,), float(len(seen)), {"gpu": g}, detail
            if not seen and not self._states.get(("row_remap_failure", (g,)), _State()).active:
                del self._remaps[g]

    def _straggler_observations(self, frame: Frame) -> Iterable[Observation]:
        """Busy GPUs whose SM clock sits far below the rack's median (median/MAD: collectors.robust)."""
        cols = frame.table("gpu").select(["gpu", "state", "sm_clock_mhz", "clocks_event_reasons"]).to_pydict()
        clocks = {
            g: float(mhz)
            for g, state, mhz, reasons in zip(*cols.values(), strict=True)
            if state == GpuState.OK and mhz is not None and not (reasons or 0) & GPU_IDLE_REASON
        }
        slow = robust_low(clocks, STRAGGLER_MIN_RELATIVE)
        median = robust_median(clocks)
        for g, mhz in clocks.items():
            key = ("straggler", (g,))
            if g not in slow and key not in self._states:
                continue
            # Whole MHz, as the heatmap's clock cell rounds it.
            detail = f"SM clock {round(mhz)} MHz vs {round(median or 0)} MHz rack median"
            yield "straggler", (g,), float(g in slow), {"gpu": g}, detail

    def _tokens_straggler_observations(self, ts: int, rows: list[dict[str, Any]]) -> Iterable[Observation]:
        """Busy servers whose generated tokens/s per GPU sits far below the rack's median.

        The clock rule cannot see a GPU that is slow at full clocks (a bad HBM stack, a throttled
        host, a degraded link its all-reduces wait on); its server's tokens/s can. Each server's rate
        is per series increases (storage.increase.rate, the one reset rule) over its last window, divided
        by the GPUs it runs on, so servers of any tensor-parallel size compare; the outlier test is
        collectors.robust's, as for clocks.
        """
        window_ms = int(STRAGGLER_TOKENS_WINDOW_S * 1000)
        per_gpu: dict[str, float] = {}
        gpus_of: dict[str, list[int]] = {}
        for row in rows:
            name, tokens = row["endpoint"], row["generation_tokens"]
            if row["state"] not in _ANSWERED or tokens is None or not row["gpus"]:
                continue
            points = self._served.setdefault(name, deque())
            points.append((ts, tokens))
            while len(points) > 1 and points[1][0] <= ts - window_ms:
                points.popleft()
            # An idle server's low rate is no straggler; a window under half full is still warming up.
            span_s = (ts - points[0][0]) / 1000
            server_rate = rate(list(points))
            if span_s < STRAGGLER_TOKENS_WINDOW_S / 2 or server_rate is None:
                continue
            if not (row["running"] or row["waiting"]):
                continue
            gpus_of[name] = [int(g) for g in row["gpus"].split(",")]
            per_gpu[name] = server_rate / len(gpus_of[name])
        slow = robust_low(per_gpu, STRAGGLER_MIN_RELATIVE)
        median = robust_median(per_gpu) or 0.0
        for name, rate_per_gpu in per_gpu.items():
            key = ("tokens", name)
            if name not in slow and ("straggler", key) not in self._states:
                continue
            on = ",".join(gpu_label(g) for g in gpus_of[name])
            detail = f"{rate_per_gpu:,.0f} tok/s per GPU vs {median:,.0f} rack median (on {on})"
            yield "straggler", key, float(name in slow), {"source": name}, detail

    def _xid_observations(self, frame: Frame) -> Iterable[Observation]:
        window_ms = self.rules.xid.window_s * 1000
        events = frame.table("events")
        if events.num_rows:
            for row in events.select(["kind", "gpu"]).to_pylist():
                if row["kind"] == EventKind.XID and row["gpu"] is not None:
                    self._xids.setdefault(row["gpu"], deque()).append(frame.ts_ms)
        for g, times in list(self._xids.items()):
            while times and times[0] <= frame.ts_ms - window_ms:
                times.popleft()
            window = f"{self.rules.xid.window_s:.0f}"
            yield "xid", (g,), float(len(times)), {"gpu": g}, f"{len(times)} XID(s) in {window} s"
            if not times and not self._states.get(("xid", (g,)), _State()).active:
                del self._xids[g]

    def _link_observations(self, frame: Frame) -> Iterable[Observation]:
        r = self.rules
        cols = frame.table("nvlink").select(["gpu", "link", "state", *LINK_ERROR_COLUMNS]).to_pydict()
        down: dict[int, list[int]] = {}
        window_ms = int(r.link_errors.window_s * 1000)
        for g, link, state, *errs in zip(*cols.values(), strict=True):
            if state is not None:
                links = down.setdefault(g, [])
                if state == NVLINK_INACTIVE:
                    links.append(link)
            if not r.link_errors.enabled:
                continue
            window = self._links.get((g, link))
            if window is None:
                # The first sample is the baseline: counts from before the monitor started are history.
                self._links[(g, link)] = _Window(last=list(errs))
                continue
            samples, grown = window.add(frame.ts_ms, tuple(errs), window_ms)
            if not samples and ("link_errors", (g, link)) not in self._states:
                continue  # a clean link costs no state
            yield (
                "link_errors",
                (g, link),
                float(samples),
                {"gpu": g, "link": link},
                f"error counters +{grown} in {samples} samples of {r.link_errors.window_s:.0f} s",
            )
        if r.links_down.enabled:
            for g, links in down.items():
                text = "links down: " + (",".join(f"L{k}" for k in links) if links else "none")
                yield "links_down", (g,), float(len(links)), {"gpu": g}, text

    def _tokens_drop(self, name: str, ts: int, tokens: float) -> tuple[float, str] | None:
        """(drop fraction, detail) of an endpoint's last-10 s tokens/s against its window average."""
        window_ms = self.rules.tokens_drop.window_s * 1000
        counter = self._tokens.get(name) or self._tokens.setdefault(name, SlidingRate(window_ms))
        counter.add(ts, tokens)
        # A baseline needs most of its window, or a server warming up reads as a drop.
        if ts - (counter.oldest_ms or ts) < window_ms / 2:
            return None
        now, baseline = counter.rate(since_ms=ts - 10_000), counter.rate()
        if now is None or not baseline:
            return None
        drop = max(0.0, 1 - now / baseline)
        return drop, f"{now:,.0f} tok/s vs {baseline:,.0f} average ({versus_text(now, baseline)})"


_ANSWERED = (EndpointState.OK, EndpointState.PARTIAL)
"""Serving row states whose endpoint answered this tick."""


def _stale(stale: bool) -> str:
    return "not answering" if stale else "answering"
