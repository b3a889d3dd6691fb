"""Tray pages (our `monitor agent`, or dcgm-exporter) -> the store's `gpu`, `nvlink` and `events` rows.

GpuPageMapper maps successive pages of one tray to rows; the agent's page is rendered by
agent_page.frame_to_agent_page (re-exported here), and mapping it gives back the rows it was rendered
from. Events do not travel as events: XIDs travel as counters (rackmon_xid_errors_total) and come back
as one xid event per increment; gpu_lost, clocks_event and link_down/link_up are derived again from
state changes between pages, with the NVML collector's rules (collectors.nvml_rows.EventRows). The
first page of a mapper is a baseline: it never yields events.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from collectors import agent_names as names
from collectors.mappings.agent_page import AgentGpu, XidTally, frame_to_agent_page
from collectors.mappings.common import MappingError, checked_int, labels_value
from collectors.mappings.gpu_events import TrayEvents
from collectors.mappings.gpu_values import (
    GPU_RANGES,
    GPU_SPECS,
    LINK_RANGES,
    LINK_SPECS,
    LINK_STATE,
    family_of,
    fill_link_totals,
    from_page,
    gpu_batch,
    gpu_want,
    sample_labels,
    sample_name,
    sample_value,
    store_values,
)
from collectors.mappings.tray_arrow import TrayStream, in_range, stream_links
from collectors.mappings.tray_stream import GPU_COLUMNS
from collectors.nvml_rows import EventRows
from collectors.promtext import ExpositionError, ExpositionParser, Family, Labels
from collectors.rack import LINKS_PER_GPU, gpu_index, gpu_place
from storage.frame import Frame, batch_from_columns, safe_batch
from storage.schemas import GpuState


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
        self._parser = ExpositionParser()  # one per endpoint: its pages share their shape
        self._rack_of_uuid: dict[str, int] = {}
        # Keyed by id() of the parser's shared Labels objects (holding them, so ids stay theirs):
        # an int hash is far cheaper than hashing a label set for each of ~650 samples a page.
        self._rack_of: dict[int, tuple[Labels, int, str]] = {}
        self._link_layout: tuple[list[object], list[tuple[int, int]], list[list[int] | None]] | None = None
        """(link families' sample names and labels, sorted keys, sample -> key positions) of the last page."""
        self._events = TrayEvents()
        self.duplicates = 0
        """Repeated series on the last page (dropped: the first sample of each counts)."""

    def map(self, page: str | bytes | Mapping[str, Family], ts_ms: int) -> Frame:
        """Rows of one page at tick `ts_ms`.

        Raises:
            ExpositionError: the page text is malformed.
            MappingError: a GPU on the page cannot be placed in the rack.
        """
        families = page if isinstance(page, Mapping) else self._parser.parse(page, gpu_want)
        # The parser kept the first sample of a repeated series (as Prometheus does); never summed.
        self.duplicates = sum(f.duplicates for f in families.values())
        self._learn_info(families.get(names.GPU_INFO))
        rows: dict[int, dict[str, int | None]] = {}
        uuids: dict[int, str] = {}
        for spec in GPU_SPECS:
            self._read_gpu_metric(family_of(spec, families), spec.column, spec.scale, rows, uuids)
        self._fill_fb_total(families, rows, uuids)
        states: dict[int, int] = {}
        state_family = families.get(names.GPU_STATE)
        if state_family is not None:
            for labels, value in state_family.values():
                rack = self._rack(labels, uuids)
                state = checked_int(value, 0, 127)
                states[rack] = int(GpuState.ERROR) if state is None else state
        keys, link_values = self._link_columns(families)
        link_state_of = dict(zip(keys, link_values[LINK_STATE], strict=True))
        fill_link_totals(rows, keys, link_values)
        order = sorted(set(uuids))
        xid_counts, xid_last = self._xid_samples(families)
        events = self._events.derive(order, states, rows, link_state_of, xid_counts, xid_last)
        links = None
        if keys:
            link_columns: dict[str, list[object]] = {
                "ts": [ts_ms] * len(keys),
                "gpu": [k[0] for k in keys],
                "link": [k[1] for k in keys],
            }
            for spec, column in zip(LINK_SPECS, link_values, strict=True):
                link_columns[spec.column] = column
            links = batch_from_columns("nvlink", link_columns)
        return self._frame(ts_ms, order, uuids, states, rows, links, events, self._host(families))

    def map_stream(self, stream: TrayStream, ts_ms: int) -> Frame:
        """Rows of one tray's Arrow answer (collectors.mappings.tray_arrow) at tick `ts_ms`.

        The same rows as the text page of the same frame: GPUs placed by tray and module (as by
        rackmon_gpu_info), values outside their column's range dropped, a GPU's all-link counters
        filled from its links, events derived by the same rules; the link columns are taken as
        Arrow arrays, never as Python values.

        Raises:
            MappingError: a GPU that cannot be placed, a GPU twice, a link or XID of a GPU not in the
                stream, a link outside 0..17 or twice.
        """
        self.duplicates = 0
        gpu = stream.gpu.to_pydict()
        uuids: dict[int, str] = {}
        for uuid, tray, module in zip(gpu["uuid"], gpu["tray"], gpu["module"], strict=True):
            rack = self._rack_of_uuid.get(uuid)
            if rack is None:
                rack = self._rack_of_uuid[uuid] = self._info_place(uuid, tray, module)
            if rack in uuids:
                raise MappingError(f"{self.source}: GPU {rack} twice in the Arrow stream")
            uuids[rack] = uuid
        racks = list(uuids)
        states = {
            r: (s if s is not None and 0 <= s <= 127 else int(GpuState.ERROR))
            for r, s in zip(racks, gpu["state"], strict=True)
        }
        rows: dict[int, dict[str, int | None]] = {r: {} for r in racks}
        for spec in GPU_SPECS:
            lo, hi = GPU_RANGES[spec.column]
            for rack, value in zip(racks, gpu[spec.column], strict=True):
                rows[rack][spec.column] = in_range(value, lo, hi)
        links, keys, link_values = stream_links(stream.nvlink, set(racks), ts_ms, self.source)
        fill_link_totals(rows, keys, link_values)
        link_state_of = dict(zip(keys, link_values[LINK_STATE], strict=True))
        xid = stream.xid.to_pydict()
        xid_counts = list(zip(xid["gpu"], xid["xid"], xid["count"], strict=True))
        if any(g not in uuids for g in xid["gpu"]):
            raise MappingError(f"{self.source}: an XID count of a GPU not in the Arrow stream")
        xid_last = [(r, v, None) for r, v in zip(racks, gpu["xid_last"], strict=True) if v is not None]
        order = sorted(racks)
        events = self._events.derive(order, states, rows, link_state_of, xid_counts, xid_last)
        # A column the checks above left as the stream had it goes into the batch as the stream's array.
        same = order == racks
        kept = {
            c: stream.gpu.column(c) for c in GPU_COLUMNS if same and [rows[r][c] for r in racks] == gpu[c]
        }
        return self._frame(ts_ms, order, uuids, states, rows, links, events, stream.hostname or None, kept)

    def _frame(
        self,
        ts_ms: int,
        order: list[int],
        uuids: Mapping[int, str],
        states: Mapping[int, int],
        rows: Mapping[int, Mapping[str, int | None]],
        links: pa.RecordBatch | None,
        events: EventRows,
        host: str | None,
        kept: Mapping[str, pa.Array] | None = None,
    ) -> Frame:
        """The tick's frame from what either answer said (GPUs in rack order); the GPUs count as seen.

        `kept`: gpu columns already built as arrays of these rows (an Arrow answer's own).
        """
        gpu_columns: dict[str, list[object]] = {
            "ts": [ts_ms] * len(order),
            "gpu": order,
            "uuid": [uuids[r] for r in order],
            "tray": [gpu_place(r)[0] for r in order],
            "state": [states.get(r, int(GpuState.OK)) for r in order],
        }
        for spec in GPU_SPECS:
            if kept is None or spec.column not in kept:
                gpu_columns[spec.column] = [rows.get(r, {}).get(spec.column) for r in order]
        batches = {"gpu": gpu_batch(gpu_columns, kept or {})}
        if links is not None and links.num_rows:
            batches["nvlink"] = links
        if len(events):
            batches["events"] = safe_batch("events", events.columns(ts_ms, host or self.source))
        self._events.seen.update(order)
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
            except ValueError as exc:
                raise MappingError(f"{self.source}: {names.GPU_INFO} of {uuid}: {exc}") from None
            self._rack_of_uuid[uuid] = self._info_place(uuid, tray, module)

    def _info_place(self, uuid: str, tray: int, module: int) -> int:
        """The rack index of a GPU its agent places at (tray, module)."""
        try:
            return gpu_index(tray, module)
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
        lo, hi = GPU_RANGES[column]
        for labels, value in family.values():
            rack = self._rack(labels, uuids)
            rows.setdefault(rack, {})[column] = from_page(value, scale, lo, hi)

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
        lo, hi = GPU_RANGES["mem_total_mib"]
        for rack, extra in parts.items():
            row = rows.setdefault(rack, {})
            used = row.get("mem_used_mib")
            if row.get("mem_total_mib") is None and used is not None:
                row["mem_total_mib"] = checked_int(used + extra, lo, hi)

    def _link_columns(
        self, families: Mapping[str, Family]
    ) -> tuple[list[tuple[int, int]], list[list[int | None]]]:
        """The page's NVLinks as sorted (rack GPU, link) keys and one column per LINK_SPECS metric.

        A link metric's value is null where its family has no sample for the key; a series repeated on
        the page reaches here once (the parser keeps its first sample); of two different series for one
        key the later wins. Where the page's link series are those of the previous page (the same
        names and label sets, in the same order: the steady state) the sample -> key layout is reused,
        so a tray's ~500 link samples cost a few list passes instead of a dict update each.
        """
        present = [family_of(spec, families) for spec in LINK_SPECS]
        shape = [
            None if f is None else (list(map(sample_name, f.samples)), list(map(sample_labels, f.samples)))
            for f in present
        ]
        if self._link_layout is None or self._link_layout[0] != shape:
            self._link_layout = (shape, *self._layout_links(present))
        _, keys, positions = self._link_layout
        columns: list[list[int | None]] = []
        for spec, family, placed in zip(LINK_SPECS, present, positions, strict=True):
            if family is None:
                columns.append([None] * len(keys))
                continue
            values = store_values(
                list(map(sample_value, family.samples)), spec.scale, *LINK_RANGES[spec.column]
            )
            if placed is None:  # the family's samples are the keys, in order
                columns.append(values)
                continue
            column: list[int | None] = [None] * len(keys)
            for position, value in zip(placed, values, strict=True):
                if position >= 0:
                    column[position] = value
            columns.append(column)
        return keys, columns

    def _layout_links(
        self, present: list[Family | None]
    ) -> tuple[list[tuple[int, int]], list[list[int] | None]]:
        """Sorted link keys, and per family each sample's key index (-1: not a sample of the family).

        A family whose samples are exactly the sorted keys gets None (its values are the column as is).
        """
        sample_keys: list[list[tuple[int, int] | None]] = []
        for family in present:
            if family is None:
                sample_keys.append([])
                continue
            sample_keys.append(
                [
                    self._link_key(labels) if name == family.name else None
                    for name, labels, _, _ in family.samples
                ]
            )
        keys = sorted({key for found in sample_keys for key in found if key is not None})
        index = {key: i for i, key in enumerate(keys)}
        positions: list[list[int] | None] = []
        for found in sample_keys:
            if found == keys:
                positions.append(None)
            else:
                positions.append([-1 if key is None else index[key] for key in found])
        return keys, positions

    def _link_key(self, labels: Labels) -> tuple[int, int]:
        rack = self._rack(labels, {})
        try:
            link = int(labels.get(names.LABEL_LINK, ""))
        except ValueError:
            raise MappingError(f"{self.source}: NVLink sample without a numeric link label") from None
        if not 0 <= link < LINKS_PER_GPU:
            raise MappingError(f"{self.source}: NVLink {link} is not 0..{LINKS_PER_GPU - 1}")
        return rack, link

    @staticmethod
    def _host(families: Mapping[str, Family]) -> str | None:
        """The host the page says it is (dcgm-exporter: `Hostname`, or `hostname` since 2026)."""
        for family in (
            families.get(names.GPU_INFO),
            families.get(names.GPU_STATE),
            *(family_of(s, families) for s in GPU_SPECS),
        ):
            if family is not None and family.samples:
                host = labels_value(family.samples[0].labels, names.LABEL_HOSTNAME, "hostname")
                if host:
                    return host
        return None

    def _xid_samples(
        self, families: Mapping[str, Family]
    ) -> tuple[list[tuple[int, int, float]], list[tuple[int, float, str | None]]]:
        """The page's XID counts as (rack GPU, xid, count) and its last XIDs as (rack GPU, xid, err_msg)."""
        counts: list[tuple[int, int, float]] = []
        counter = families.get(names.XID_COUNT)
        if counter is not None:
            for labels, value in counter.values():
                rack = self._rack(labels, {})
                try:
                    xid = int(labels.get(names.LABEL_XID, ""))
                except ValueError:
                    raise MappingError(f"{self.source}: {names.XID_COUNT} without a numeric xid") from None
                counts.append((rack, xid, value))
        gauge = families.get(names.XID_LAST)
        last = (
            [] if gauge is None else [(self._rack(lb, {}), v, lb.get("err_msg")) for lb, v in gauge.values()]
        )
        return counts, last


__all__ = ["AgentGpu", "ExpositionError", "GpuPageMapper", "MappingError", "XidTally", "frame_to_agent_page"]
