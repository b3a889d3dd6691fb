"""Tray pages (our `monitor agent`, or dcgm-exporter) -> the store's `gpu`, `nvlink` and `events` rows.

GpuPageMapper maps successive pages of one tray to rows; the agent's page is rendered by
agent_page.frame_to_agent_page (re-exported here), and mapping it gives back the rows it was rendered
from. Events do not travel as events: XIDs travel as counters (rackmon_xid_errors_total) and come back
as one xid event per increment; gpu_lost, clocks_event and link_down/link_up are derived again from
state changes between pages, with the NVML collector's rules (collectors.nvml_rows.EventRows). The
first page of a mapper is a baseline: it never yields events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pynvml

from collectors import agent_names as names
from collectors.mappings.agent_page import AgentGpu, XidTally, frame_to_agent_page
from collectors.mappings.common import MappingError, checked_int, column_ranges, labels_value
from collectors.nvml_fields import xid_detail
from collectors.nvml_rows import EventRows
from collectors.promtext import ExpositionError, Family, Labels, parse
from collectors.rack import LINKS_PER_GPU, gpu_index, gpu_label, gpu_place
from storage.frame import Frame, batch_from_columns
from storage.schemas import EventKind, GpuState

_GPU_RANGES = column_ranges("gpu")
_LINK_RANGES = column_ranges("nvlink")
_GPU_SPECS = names.GPU_METRICS
_LINK_SPECS = names.NVLINK_METRICS
_MAX_EVENTS_PER_COUNTER = 1000
"""An XID counter that jumps by more than this (an agent restart, a corrupt page) yields only this many."""


def _from_page(value: float, scale: float, lo: int, hi: int) -> int | None:
    """A page value back in the store's integer unit (None for NaN, DCGM blanks, out-of-range junk)."""
    if scale == 1:
        return checked_int(value, lo, hi)
    # Bytes -> KiB floors (dcgm-exporter's byte counters need not be whole KiB); W -> mW rounds.
    return checked_int(value // scale if scale > 1 else value / scale, lo, hi)


class GpuPageMapper:
    """Maps successive pages of one tray's agent or dcgm-exporter to gpu, nvlink and events rows.

    A GPU is placed in the rack by, in order: the page's rackmon_gpu_info (tray, module), the
    `placement` map (UUID -> rack index, from the rack config), or `tray` + the `gpu` label (local
    index i is module i + 1).
    """

    def __init__(
        self, source: str, *, tray: int | None = None, placement: Mapping[str, int] | None = None
    ) -> None:
        """Args:
        source: the endpoint's name (events.source when the page names no host).
        tray: the compute tray this endpoint serves, when known.
        placement: UUID -> rack index 0..71, when known.
        """
        self.source = source
        self.tray = tray
        self.placement = dict(placement or {})
        self._rack_of_uuid: dict[str, int] = {}
        # Keyed by id() of the parser's shared Labels objects (holding them, so ids stay theirs):
        # an int hash is far cheaper than hashing a label set for each of ~650 samples a page.
        self._rack_of: dict[int, tuple[Labels, int, str]] = {}
        self._link_of: dict[int, tuple[Labels, tuple[int, int]]] = {}
        self._seen: set[int] = set()
        self._state: dict[int, int] = {}
        self._clocks: dict[int, int | None] = {}
        self._links: dict[int, list[int | None]] = {}
        self._xid_counts: dict[tuple[int, int], float] = {}
        self._xid_last: dict[int, float] = {}

    def map(self, page: str | bytes | Mapping[str, Family], ts_ms: int) -> Frame:
        """Rows of one page at tick `ts_ms`.

        Raises:
            ExpositionError: the page text is malformed.
            MappingError: a GPU on the page cannot be placed in the rack.
        """
        families = page if isinstance(page, Mapping) else parse(page)
        self._learn_info(families.get(names.GPU_INFO))
        rows: dict[int, dict[str, int | None]] = {}
        uuids: dict[int, str] = {}
        for spec in _GPU_SPECS:
            self._read_gpu_metric(families.get(spec.name), spec.column, spec.scale, rows, uuids)
        self._fill_fb_total(families, rows, uuids)
        states: dict[int, int] = {}
        state_family = families.get(names.GPU_STATE)
        if state_family is not None:
            for labels, value in state_family.values():
                rack = self._rack(labels, uuids)
                state = checked_int(value, 0, 127)
                states[rack] = int(GpuState.ERROR) if state is None else state
        links = self._read_links(families)
        order = sorted(set(uuids))
        host = self._host(families)
        events = self._events(families, order, states, rows, links)
        gpu_columns: dict[str, list[object]] = {
            "ts": [ts_ms] * len(order),
            "gpu": order,
            "uuid": [uuids[r] for r in order],
            "tray": [gpu_place(r)[0] for r in order],
            "state": [states.get(r, int(GpuState.OK)) for r in order],
        }
        for spec in _GPU_SPECS:
            gpu_columns[spec.column] = [rows.get(r, {}).get(spec.column) for r in order]
        batches = {"gpu": batch_from_columns("gpu", gpu_columns)}
        if links:
            keys = sorted(links)
            link_columns: dict[str, list[object]] = {
                "ts": [ts_ms] * len(keys),
                "gpu": [k[0] for k in keys],
                "link": [k[1] for k in keys],
            }
            for i, spec in enumerate(_LINK_SPECS):
                link_columns[spec.column] = [links[k][i] for k in keys]
            batches["nvlink"] = batch_from_columns("nvlink", link_columns)
        if len(events):
            batches["events"] = events.batch(ts_ms, host or self.source)
        self._seen.update(order)
        return Frame(ts_ms=ts_ms, batches=batches)

    def _learn_info(self, info: Family | None) -> None:
        if info is None:
            return
        for labels, _ in info.values():
            uuid = labels_value(labels, names.LABEL_UUID, "uuid")
            if uuid is None or uuid in self._rack_of_uuid:
                continue
            try:
                tray = int(labels.get(names.LABEL_TRAY, ""))
                module = int(labels.get(names.LABEL_MODULE, ""))
                self._rack_of_uuid[uuid] = gpu_index(tray, module)
            except ValueError as exc:
                raise MappingError(f"{self.source}: {names.GPU_INFO} of {uuid}: {exc}") from None

    def _rack(self, labels: Labels, uuids: dict[int, str]) -> int:
        """The rack index of the GPU a sample's labels name (memoised per shared Labels object)."""
        known = self._rack_of.get(id(labels))
        if known is None or known[0] is not labels:
            uuid = labels_value(labels, names.LABEL_UUID, "uuid", "gpu_uuid")
            if uuid is None:
                raise MappingError(f"{self.source}: a GPU sample has no UUID label")
            rack = self._rack_of_uuid.get(uuid)
            if rack is None:
                rack = self._place(uuid, labels)
                self._rack_of_uuid[uuid] = rack
            if len(self._rack_of) > 100_000:
                self._rack_of.clear()
            known = self._rack_of[id(labels)] = (labels, rack, uuid)
        uuids.setdefault(known[1], known[2])
        return known[1]

    def _place(self, uuid: str, labels: Labels) -> int:
        if uuid in self.placement:
            return self.placement[uuid]
        local = labels.get(names.LABEL_GPU)
        if self.tray is None or local is None:
            raise MappingError(
                f"{self.source}: cannot place GPU {uuid} in the rack (no {names.GPU_INFO}, no placement"
                " for its UUID and no tray for this endpoint in the config)"
            )
        try:
            return gpu_index(self.tray, int(local) + 1)
        except ValueError as exc:
            raise MappingError(f"{self.source}: GPU {uuid}: {exc}") from None

    def _read_gpu_metric(
        self,
        family: Family | None,
        column: str,
        scale: float,
        rows: dict[int, dict[str, int | None]],
        uuids: dict[int, str],
    ) -> None:
        if family is None:
            return
        lo, hi = _GPU_RANGES[column]
        for labels, value in family.values():
            rack = self._rack(labels, uuids)
            rows.setdefault(rack, {})[column] = _from_page(value, scale, lo, hi)

    def _fill_fb_total(
        self, families: Mapping[str, Family], rows: dict[int, dict[str, int | None]], uuids: dict[int, str]
    ) -> None:
        """dcgm-exporter's default page has no FB_TOTAL: total = used + free + reserved."""
        parts: dict[int, float] = {}
        for name in (names.FB_FREE, names.FB_RESERVED):
            family = families.get(name)
            if family is None:
                continue
            for labels, value in family.values():
                rack = self._rack(labels, uuids)
                parts[rack] = parts.get(rack, 0.0) + value
        lo, hi = _GPU_RANGES["mem_total_mib"]
        for rack, extra in parts.items():
            row = rows.setdefault(rack, {})
            used = row.get("mem_used_mib")
            if row.get("mem_total_mib") is None and used is not None:
                row["mem_total_mib"] = checked_int(used + extra, lo, hi)

    def _read_links(self, families: Mapping[str, Family]) -> dict[tuple[int, int], list[int | None]]:
        links: dict[tuple[int, int], list[int | None]] = {}
        width = len(_LINK_SPECS)
        for i, spec in enumerate(_LINK_SPECS):
            family = families.get(spec.name)
            if family is None:
                continue
            lo, hi = _LINK_RANGES[spec.column]
            for labels, value in family.values():
                known = self._link_of.get(id(labels))
                key = known[1] if known is not None and known[0] is labels else self._link_key(labels)
                row = links.get(key)
                if row is None:
                    row = links[key] = [None] * width
                row[i] = _from_page(value, spec.scale, lo, hi)
        return links

    def _link_key(self, labels: Labels) -> tuple[int, int]:
        rack = self._rack(labels, {})
        try:
            link = int(labels.get(names.LABEL_LINK, ""))
        except ValueError:
            raise MappingError(f"{self.source}: NVLink sample without a numeric link label") from None
        if not 0 <= link < LINKS_PER_GPU:
            raise MappingError(f"{self.source}: NVLink {link} is not 0..{LINKS_PER_GPU - 1}")
        if len(self._link_of) > 100_000:
            self._link_of.clear()
        self._link_of[id(labels)] = (labels, (rack, link))
        return rack, link

    @staticmethod
    def _host(families: Mapping[str, Family]) -> str | None:
        """The host the page says it is (dcgm-exporter: `Hostname`, or `hostname` since 2026)."""
        for name in (names.GPU_INFO, names.GPU_STATE, *(s.name for s in _GPU_SPECS)):
            family = families.get(name)
            if family is not None and family.samples:
                host = labels_value(family.samples[0].labels, names.LABEL_HOSTNAME, "hostname")
                if host:
                    return host
        return None

    def _events(
        self,
        families: Mapping[str, Family],
        order: Iterable[int],
        states: Mapping[int, int],
        rows: Mapping[int, Mapping[str, int | None]],
        links: Mapping[tuple[int, int], list[int | None]],
    ) -> EventRows:
        events = EventRows()
        self._xid_events(families, events)
        state_index = [s.column for s in _LINK_SPECS].index("state")
        for rack in order:
            label = gpu_label(rack)
            seen = rack in self._seen
            state = states.get(rack, int(GpuState.OK))
            if seen and state == GpuState.LOST and self._state.get(rack) != GpuState.LOST:
                events.add(
                    EventKind.GPU_LOST, rack, None, pynvml.NVML_ERROR_GPU_IS_LOST, f"{label}: GPU is lost"
                )
            self._state[rack] = state
            reasons = rows.get(rack, {}).get("clocks_event_reasons")
            if reasons is not None:
                self._clocks[rack] = events.clocks_change(rack, self._clocks.get(rack), reasons)
            link_states: list[int | None] = [None] * LINKS_PER_GPU
            for link in range(LINKS_PER_GPU):
                row = links.get((rack, link))
                if row is not None:
                    link_states[link] = row[state_index]
            previous = self._links.setdefault(rack, [None] * LINKS_PER_GPU)
            events.link_changes(rack, label, previous, link_states)
        return events

    def _xid_events(self, families: Mapping[str, Family], events: EventRows) -> None:
        """xid events: one per increment of rackmon_xid_errors_total, else per change of the XID gauge."""
        counter = families.get(names.XID_COUNT)
        counted: set[int] = set()
        if counter is not None:
            for labels, value in counter.values():
                rack = self._rack(labels, {})
                counted.add(rack)
                try:
                    xid = int(labels.get(names.LABEL_XID, ""))
                except ValueError:
                    raise MappingError(f"{self.source}: {names.XID_COUNT} without a numeric xid") from None
                before = self._xid_counts.get((rack, xid))
                self._xid_counts[rack, xid] = value
                if before is None:
                    if rack not in self._seen:
                        continue  # baseline: these happened before we looked
                    before = 0.0
                new = value - before if value >= before else value  # a drop: the agent restarted
                for _ in range(int(min(new, _MAX_EVENTS_PER_COUNTER))):
                    events.add(EventKind.XID, rack, None, xid, f"{gpu_label(rack)} {xid_detail(xid)}")
        gauge = families.get(names.XID_LAST)
        if gauge is None:
            return
        for labels, value in gauge.values():
            rack = self._rack(labels, {})
            before = self._xid_last.get(rack)
            self._xid_last[rack] = value
            if rack in counted or before is None or value == before or not value or value != value:
                continue
            xid = checked_int(value, 0, 1 << 31)
            if xid is not None:
                detail = labels.get("err_msg") or xid_detail(xid)
                events.add(EventKind.XID, rack, None, xid, f"{gpu_label(rack)} {detail}")


__all__ = ["AgentGpu", "ExpositionError", "GpuPageMapper", "MappingError", "XidTally", "frame_to_agent_page"]
