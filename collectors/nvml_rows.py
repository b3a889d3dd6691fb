"""Row building for the NVML collector: the events it emits, as columns (no pyarrow: the agent loads this)."""

from __future__ import annotations

from typing import Any

import pynvml

from collectors.nvml_fields import CLOCKS_EVENT_IGNORED, NVLINK_STATE_ACTIVE, clocks_event_names
from storage.columns import EventKind

LINK_UP_STATES = frozenset({NVLINK_STATE_ACTIVE, pynvml.NVML_NVLINK_STATE_SLEEP})
"""Link states that count as up for link_down/link_up events (SLEEP is power saving, not a fault)."""


class EventRows:
    """The events of one tick, kept as columns of the events table."""

    __slots__ = ("code", "detail", "gpu", "kind", "link")

    def __init__(self) -> None:
        """No events yet."""
        self.kind: list[str] = []
        self.gpu: list[int | None] = []
        self.link: list[int | None] = []
        self.code: list[int | None] = []
        self.detail: list[str] = []

    def __len__(self) -> int:
        """Events so far."""
        return len(self.kind)

    def add(self, kind: str, gpu: int | None, link: int | None, code: int | None, detail: str) -> None:
        """Append one event (an EventKind value)."""
        self.kind.append(kind)
        self.gpu.append(gpu)
        self.link.append(link)
        self.code.append(code)
        self.detail.append(detail)

    def link_changes(self, gpu: int, previous: list[int | None], states: list[int | None]) -> None:
        """link_down / link_up for each link that left or re-entered the up states since `previous`.

        `previous` is updated in place. The first reading of a link (previous None) is a baseline, not an
        event, and a link not read this tick (None) keeps its last state.
        """
        for link, state in enumerate(states):
            if state is None:
                continue
            before = previous[link]
            previous[link] = state
            if before is None or (before in LINK_UP_STATES) == (state in LINK_UP_STATES):
                continue
            kind = EventKind.LINK_UP if state in LINK_UP_STATES else EventKind.LINK_DOWN
            self.add(kind, gpu, link, state, f"NVLink {link}: state {before} -> {state}")

    def clocks_change(self, gpu: int, before: int | None, reasons: int) -> int:
        """clocks_event when the significant reason bits differ from `before`; returns the new bits.

        GpuIdle and the two settings bits are masked off (CLOCKS_EVENT_IGNORED), so an idle GPU flapping
        between kernels emits nothing. `before` None is the first reading: a baseline, not an event.
        """
        significant = reasons & ~CLOCKS_EVENT_IGNORED
        if before is not None and before != significant:
            detail = clocks_event_names(significant)
            if not significant:
                detail = f"None (cleared {clocks_event_names(before)})"
            self.add(EventKind.CLOCKS_EVENT, gpu, None, significant, detail)
        return significant

    def columns(self, ts_ms: int, source: str) -> dict[str, list[Any]]:
        """The events table's columns, every row stamped `ts_ms` and `source`."""
        n = len(self.kind)
        return {
            "ts": [ts_ms] * n,
            "kind": self.kind,
            "gpu": self.gpu,
            "link": self.link,
            "code": self.code,
            "source": [source] * n,
            "detail": self.detail,
        }
