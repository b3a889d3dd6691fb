"""Active alerts, as read back from the events the alert engine recorded (kind alert / alert_cleared).

The TUI reads only frames, never the engine, so live and replay show alerts the same way. No UI toolkit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from collectors.alert_rules import AlertRule, power_detail, temp_margin_detail
from collectors.rack import GPUS, gpu_label
from monitor.view.gpu_history import events_of
from storage.frame import Frame
from storage.schemas import EventKind, GpuState

AlertKey = tuple[int | None, int | None, int | None, str | None]
"""(rule code, gpu, link, source): what one alert is about."""


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """An alert that fired and has not cleared."""

    ts_ms: int
    code: int | None
    gpu: int | None
    link: int | None
    source: str | None
    detail: str | None
    name: str | None = None
    """A condition that is not an alert rule's (recording stopped) names itself."""

    @property
    def rule(self) -> str:
        """The rule's name ('temp_margin'), or 'alert <code>' for a code this build does not know."""
        if self.name is not None:
            return self.name
        try:
            return AlertRule(self.code).name.lower()
        except ValueError:
            return f"alert {self.code}"

    @property
    def text(self) -> str:
        """'T05.G1 L4 link_errors: error counters +12 in 60 s'."""
        where = (
            gpu_label(self.gpu) if self.gpu is not None and 0 <= self.gpu < GPUS else (self.source or "rack")
        )
        if self.link is not None:
            where += f" L{self.link}"
        if self.name is not None:
            return f"{self.name}: {self.detail or ''}".rstrip(": ")
        return f"{where} {self.rule}: {self.detail or ''}".rstrip(": ")


class AlertTracker:
    """Follows frames (oldest first) and keeps the alerts that are active at the newest one.

    A stopped recording counts as an alert until it resumes: the operator must see that history is
    only in memory.
    """

    def __init__(self) -> None:
        """No alerts, nothing seen."""
        self.active: dict[AlertKey, ActiveAlert] = {}
        self.seen_ms: int | None = None

    def update(self, frames: Sequence[Frame]) -> int:
        """Apply the events of frames newer than the last seen; return how many alerts fired in them."""
        fired = 0
        newest: Frame | None = None
        for frame in frames:
            if self.seen_ms is not None and frame.ts_ms <= self.seen_ms:
                continue
            self.seen_ms = frame.ts_ms
            newest = frame
            for ev in events_of(frame):
                key = (ev.code, ev.gpu, ev.link, ev.source)
                if ev.kind == EventKind.ALERT:
                    fired += key not in self.active
                    self.active[key] = ActiveAlert(ev.ts_ms, ev.code, ev.gpu, ev.link, ev.source, ev.detail)
                elif ev.kind == EventKind.ALERT_CLEARED:
                    self.active.pop(key, None)
                elif ev.kind == EventKind.RECORDING_STOPPED:
                    # Not a rule's alert, but as urgent: history is being held in memory only.
                    fired += key not in self.active
                    self.active[key] = ActiveAlert(
                        ev.ts_ms, None, None, None, ev.source, ev.detail, name="recording stopped"
                    )
                elif ev.kind == EventKind.RECORDING_RESUMED:
                    self.active.pop(key, None)
        if newest is not None:
            self._quote_current(newest)
        return fired

    def _quote_current(self, frame: Frame) -> None:
        """Restate the temperature and power alerts with `frame`'s readings: the value in the alert is
        the one the GPU's cell shows, from the same sample, not the one it fired at seconds ago."""
        live = {
            key: alert
            for key, alert in self.active.items()
            if alert.gpu is not None and alert.code in (AlertRule.TEMP_MARGIN, AlertRule.POWER)
        }
        gpu = frame.table("gpu")
        if not live or not gpu.num_rows:
            return
        cols = gpu.select(["gpu", "state", "temp_margin_c", "temp_gpu_c", "power_mw", "power_limit_mw"])
        rows = {row["gpu"]: row for row in cols.to_pylist() if row["state"] == GpuState.OK}
        for key, alert in live.items():
            row = rows.get(alert.gpu)
            if row is None:
                continue  # no reading this tick: the alert keeps the last value it quoted
            detail = alert.detail
            if alert.code == AlertRule.TEMP_MARGIN and row["temp_margin_c"] is not None:
                detail = temp_margin_detail(row["temp_margin_c"], row["temp_gpu_c"])
            elif alert.code == AlertRule.POWER and row["power_mw"] is not None and row["power_limit_mw"]:
                detail = power_detail(row["power_mw"], row["power_limit_mw"])
            self.active[key] = replace(alert, detail=detail)

    def reset(self) -> None:
        """Forget everything (a replay seek went backwards)."""
        self.active.clear()
        self.seen_ms = None

    def newest_first(self) -> list[ActiveAlert]:
        """The active alerts, newest first."""
        return sorted(self.active.values(), key=lambda a: a.ts_ms, reverse=True)
