"""The Source protocol: anything that can turn one tick into a Frame."""

from __future__ import annotations

from typing import Protocol

from storage.frame import Frame


class Source(Protocol):
    """A telemetry source polled once per tick.

    `poll` must not raise for a per-device or per-field problem: those become row states and events.
    It may raise only when the whole source is unusable (the poller then marks it stale).
    """

    name: str
    """Shown to operators in events and `monitor doctor` (a host, an URL)."""

    def poll(self, ts_ms: int) -> Frame:
        """Collect one tick, stamping every row with `ts_ms`."""
        ...

    def close(self) -> None:
        """Release handles, threads and sockets."""
        ...
