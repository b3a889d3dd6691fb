"""Row building for the NVML collector: the events it emits, and Arrow batches that survive odd values."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pynvml

from collectors.nvml_fields import CLOCKS_EVENT_IGNORED, NVLINK_STATE_ACTIVE, clocks_event_names
from storage.frame import batch_from_columns
from storage.schemas import TABLES, EventKind

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

    def batch(self, ts_ms: int, source: str) -> pa.RecordBatch:
        """The events table batch, every row stamped `ts_ms` and `source`."""
        n = len(self.kind)
        return safe_batch(
            "events",
            {
                "ts": [ts_ms] * n,
                "kind": self.kind,
                "gpu": self.gpu,
                "link": self.link,
                "code": self.code,
                "source": [source] * n,
                "detail": self.detail,
            },
        )


_INT_BOUNDS = {
    pa.int8(): (-(1 << 7), (1 << 7) - 1),
    pa.int16(): (-(1 << 15), (1 << 15) - 1),
    pa.int32(): (-(1 << 31), (1 << 31) - 1),
    pa.int64(): (-(1 << 63), (1 << 63) - 1),
}


def safe_batch(table: str, columns: dict[str, list[Any]]) -> pa.RecordBatch:
    """batch_from_columns, except that a value outside its column's integer type becomes null.

    Drivers answer "not available" with sentinels such as 0xFFFFFFFF, and u64 counters can exceed
    int64; one such value must cost a cell, not the tick. The check runs only when Arrow refuses.
    """
    try:
        return batch_from_columns(table, columns)
    except (pa.ArrowInvalid, OverflowError):
        pass
    schema = TABLES[table]
    fixed: dict[str, list[Any]] = {}
    for name, values in columns.items():
        bounds = _INT_BOUNDS.get(schema.field(name).type)
        if bounds is None:
            fixed[name] = values
            continue
        lo, hi = bounds
        fixed[name] = [v if v is None or (isinstance(v, int) and lo <= v <= hi) else None for v in values]
    return batch_from_columns(table, fixed)
