"""Events of a tray derived from successive answers of its agent or dcgm-exporter (text or Arrow).

Events do not travel as events: XIDs travel as counters (rackmon_xid_errors_total) and come back as one
xid event per increment (else one per change of the last-XID gauge); gpu_lost, clocks_event and
link_down/link_up are derived again from state changes between answers, with the NVML collector's rules
(collectors.nvml_rows.EventRows). A GPU's first answer is its baseline: it never yields events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pynvml

from collectors.mappings.common import checked_int
from collectors.nvml_fields import xid_detail
from collectors.nvml_rows import EventRows
from collectors.rack import LINKS_PER_GPU
from storage.schemas import EventKind, GpuState

MAX_EVENTS_PER_COUNTER = 1000
"""An XID counter that jumps by more than this (an agent restart, a corrupt page) yields only this many."""


class TrayEvents:
    """What one tray's earlier answers said, to derive the events of the next one."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        """Rack GPUs an earlier answer had (their baseline is taken)."""
        self._state: dict[int, int] = {}
        self._clocks: dict[int, int | None] = {}
        self._links: dict[int, list[int | None]] = {}
        self._xid_counts: dict[tuple[int, int], float] = {}
        self._xid_last: dict[int, float] = {}

    def derive(
        self,
        order: Iterable[int],
        states: Mapping[int, int],
        rows: Mapping[int, Mapping[str, int | None]],
        link_state_of: Mapping[tuple[int, int], int | None],
        xid_counts: Iterable[tuple[int, int, float]],
        xid_last: Iterable[tuple[int, float, str | None]],
    ) -> EventRows:
        """The events of one answer: its GPUs in `order`, their states and gpu rows, the link states by
        (GPU, link), XID counts as (GPU, xid, count) and last XIDs as (GPU, xid, err_msg). The GPUs are
        not marked seen here: the caller does once the answer's rows are made."""
        events = EventRows()
        self._xid_events(xid_counts, xid_last, events)
        for rack in order:
            seen = rack in self.seen
            state = states.get(rack, int(GpuState.OK))
            if seen and state == GpuState.LOST and self._state.get(rack) != GpuState.LOST:
                events.add(EventKind.GPU_LOST, rack, None, pynvml.NVML_ERROR_GPU_IS_LOST, "GPU is lost")
            self._state[rack] = state
            reasons = rows.get(rack, {}).get("clocks_event_reasons")
            if reasons is not None:
                self._clocks[rack] = events.clocks_change(rack, self._clocks.get(rack), reasons)
            link_states = [link_state_of.get((rack, link)) for link in range(LINKS_PER_GPU)]
            previous = self._links.setdefault(rack, [None] * LINKS_PER_GPU)
            events.link_changes(rack, previous, link_states)
        return events

    def _xid_events(
        self,
        xid_counts: Iterable[tuple[int, int, float]],
        xid_last: Iterable[tuple[int, float, str | None]],
        events: EventRows,
    ) -> None:
        """xid events: one per increment of rackmon_xid_errors_total, else per change of the XID gauge."""
        counted: set[int] = set()
        for rack, xid, value in xid_counts:
            counted.add(rack)
            before = self._xid_counts.get((rack, xid))
            self._xid_counts[rack, xid] = value
            if before is None:
                if rack not in self.seen:
                    continue  # baseline: these happened before we looked
                before = 0.0
            new = value - before if value >= before else value  # a drop: the agent restarted
            for _ in range(int(min(new, MAX_EVENTS_PER_COUNTER))):
                events.add(EventKind.XID, rack, None, xid, xid_detail(xid))
        for rack, value, err_msg in xid_last:
            before = self._xid_last.get(rack)
            self._xid_last[rack] = value
            if rack in counted or before is None or value == before or not value or value != value:
                continue
            xid = checked_int(value, 0, 1 << 31)
            if xid is not None:
                events.add(EventKind.XID, rack, None, xid, err_msg or xid_detail(xid))
