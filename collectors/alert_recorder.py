"""AlertRecorder: puts the alert engine's events (collectors.alerts) into the frames the store records.

It is a Poller sink that watches every merged rack frame (so it sees every source, the poller's stale
markers included) and a Source whose poll() hands the events it found over to the next tick's frame.
Recorded events are thus stamped with the tick after the one that crossed the threshold (one interval
later); the event's detail names the value that crossed it.
"""

from __future__ import annotations

import threading
from typing import Any

from collectors.alert_rules import AlertRules
from collectors.alerts import AlertEngine
from storage.frame import Frame, batch_from_rows


class AlertRecorder:
    """Records alerts in the store: a Poller sink that evaluates each rack frame, and a Source that
    hands the events found to the next tick's frame (so they travel with the frames the store writes).
    """

    name = "alerts"

    def __init__(self, rules: AlertRules | None = None) -> None:
        """Evaluate `rules` (the defaults when None)."""
        self.engine = AlertEngine(rules)
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, frame: Frame) -> None:
        """The sink: evaluate one merged rack frame (called in the poller's thread)."""
        events = self.engine.evaluate(frame)
        if events:
            with self._lock:
                self._pending.extend(events)

    def poll(self, ts_ms: int) -> Frame:
        """The source: the events found since the last poll, stamped `ts_ms`."""
        with self._lock:
            events, self._pending = self._pending, []
        if not events:
            return Frame(ts_ms)
        return Frame(ts_ms, {"events": batch_from_rows("events", [{"ts": ts_ms, **e} for e in events])})

    def close(self) -> None:
        """Nothing to release."""
