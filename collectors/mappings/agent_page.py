"""The `monitor agent` page: a tray's NVML tick rendered as Prometheus text (pure; see agent_names).

No pyarrow: the agent renders from the collector's column lists (storage.plain_frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collectors import agent_names as names
from collectors.rack import gpu_index
from storage.columns import EventKind
from storage.increase import step
from storage.plain_frame import PlainFrame, as_plain

if TYPE_CHECKING:
    from storage.frame import Frame

_GPU_SPECS = names.GPU_METRICS
_LINK_SPECS = names.NVLINK_METRICS


@dataclass(frozen=True)
class AgentGpu:
    """Identity and rack place of one GPU of a tray, as the agent publishes it.

    Attributes:
        index: tray-local NVML index (the `gpu` label).
        uuid: NVML UUID (`GPU-...`), the GPU's key everywhere.
        tray: compute tray 1..18; module: nvmlPlatformInfo.moduleId 1..4.
        slot: physical slot from the top of the rack (None when the driver has no platform info).
        key: the GPU's row key when it is not in a rack (tray 0, an HGX board: its NVML index).
    """

    index: int
    uuid: str
    tray: int
    module: int
    slot: int | None = None
    pci_bus_id: str = ""
    model_name: str = "NVIDIA GB300"
    serial: str = ""
    key: int | None = None

    @property
    def rack_index(self) -> int:
        """The key of the GPU's rows: rack GPU index 0..71, or `key` on a host that is not in a rack."""
        return self.key if self.key is not None else gpu_index(self.tray, self.module)


@dataclass
class XidTally:
    """XID counts per (rack GPU, xid) and the last XID per GPU, kept by the agent across frames."""

    counts: dict[tuple[int, int], int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)

    def update(self, frame: PlainFrame | Frame) -> None:
        """Count the xid events of one frame."""
        events = as_plain(frame).table("events")
        for kind, gpu, code in zip(events["kind"], events["gpu"], events["code"], strict=True):
            if kind == EventKind.XID and gpu is not None and code is not None:
                self.counts[gpu, code] = self.counts.get((gpu, code), 0) + 1
                self.last[gpu] = code


_CARRIED: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("gpu", ("uuid",), tuple(spec.column for spec in _GPU_SPECS if spec.type == "counter")),
    ("nvlink", ("gpu", "link"), tuple(spec.column for spec in _LINK_SPECS if spec.type == "counter")),
)
"""(table, key columns of one series, counter columns) whose values the agent carries across resets."""


@dataclass
class CounterCarry:
    """Makes the agent's exported counters monotone within one agent process.

    NVML's counters (energy, volatile ECC, NVLink data and error counters) restart from 0 when the
    GPU is reset or the driver reloads: a lost GPU that comes back, `nvidia-smi -r`, a reload under
    a restarted agent. Exporting the device value as is puts that drop on the page. Prometheus reads
    any drop as "restarted from 0" and counts the whole new value as new work, which is right for a
    true restart but cannot tell it from a small step back, and a scraper slower than the agent (a
    Prometheus at 15 s beside the monitor at 1 s) misses a reset whose new value has already climbed
    past the old one (a volatile ECC count of 3 that resets and reaches 7 reads as +4, not +7).

    So the agent carries: the first value it reads of a series is exported as is (DCGM's own value,
    e.g. energy since the driver loaded), and every later poll adds the series' increase with
    Prometheus' rule (storage.increase.step: a lower value means the device restarted from 0 and
    the increase is the new value). The exported value never decreases while the agent runs, its
    increases are the device's, and an agent restart is an honest restart the scrapers' reset rule
    already handles (the value starts again at the device's). A series with no value this poll (a
    lost GPU) is left off and keeps its last value for when it returns. The price: after a device
    reset the exported value is no longer the device's own reading (DCGM's "since the driver
    loaded"), only its increases are; a Prometheus counter's start value carries no meaning.
    """

    _series: dict[tuple[str, str], _Carried] = field(default_factory=dict)
    """Per (table, counter column), each series' last raw and exported values, by the series' key."""

    def apply(self, frame: PlainFrame) -> PlainFrame:
        """`frame` with its counter columns replaced by the carried, monotone values."""
        tables = dict(frame.tables)
        for table, key_columns, counters in _CARRIED:
            if not frame.rows(table):
                continue
            columns = dict(tables[table])
            keys = list(zip(*(columns[k] for k in key_columns), strict=True))
            for column in counters:
                carried = self._series.setdefault((table, column), _Carried())
                columns[column] = carried.carry(keys, columns[column])
            tables[table] = columns
        return PlainFrame(frame.ts_ms, tables)


@dataclass
class _Carried:
    """One counter column's series: the last raw value read and the value exported, by series key."""

    last_raw: dict[tuple[object, ...], int] = field(default_factory=dict)
    exported: dict[tuple[object, ...], int] = field(default_factory=dict)

    def carry(self, keys: list[tuple[object, ...]], raws: list[int | None]) -> list[int | None]:
        """The exported values of one poll's `raws` (None stays None: the series keeps its last values)."""
        last_raw, exported = self.last_raw, self.exported
        out: list[int | None] = []
        for key, raw in zip(keys, raws, strict=True):
            if raw is None:
                out.append(None)
                continue
            prev = last_raw.get(key)
            last_raw[key] = raw
            value = raw if prev is None else exported[key] + int(step(prev, raw) or 0)
            exported[key] = value
            out.append(value)
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _page_value(value: int, scale: float) -> str:
    """A store integer in the page's unit: exact both ways (ints stay ints, mW -> W is a float)."""
    if scale == 1:
        return str(value)
    if scale > 1:
        return str(value * int(scale))
    return repr(value / round(1 / scale))


def _header(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def frame_to_agent_page(
    frame: PlainFrame | Frame, gpus: Sequence[AgentGpu], *, hostname: str = "", xids: XidTally | None = None
) -> str:
    """Render a tray's NVML Frame as the agent's /metrics page (text format 0.0.4).

    Args:
        frame: one tick of the tray (its gpu and nvlink tables; events go through `xids`).
        gpus: the tray's GPUs; GPUs without a row in the frame are left off the page.
        hostname: the `Hostname` label.
        xids: XID counts so far (update it with each frame before rendering).
    """
    frame = as_plain(frame)
    gpu_cols = frame.table("gpu")
    row_of = {g: i for i, g in enumerate(gpu_cols["gpu"])}
    present = [g for g in gpus if g.rack_index in row_of]
    host = _escape(hostname)
    full: dict[int, str] = {}
    short: dict[int, str] = {}
    for g in present:
        short[g.rack_index] = f'{names.LABEL_GPU}="{g.index}",{names.LABEL_UUID}="{_escape(g.uuid)}"'
        full[g.rack_index] = (
            f'{short[g.rack_index]},{names.LABEL_PCI_BUS_ID}="{_escape(g.pci_bus_id)}",'
            f'{names.LABEL_DEVICE}="nvidia{g.index}",{names.LABEL_MODEL}="{_escape(g.model_name)}",'
            f'{names.LABEL_HOSTNAME}="{host}"'
        )
    out: list[str] = []
    _header(out, names.GPU_INFO, "gauge", "Identity and rack place of a GPU (always 1).")
    for g in present:
        slot = "" if g.slot is None else str(g.slot)
        out.append(
            f'{names.GPU_INFO}{{{full[g.rack_index]},{names.LABEL_TRAY}="{g.tray}",'
            f'{names.LABEL_MODULE}="{g.module}",{names.LABEL_SLOT}="{slot}",'
            f'{names.LABEL_SERIAL}="{_escape(g.serial)}"}} 1'
        )
    _header(out, names.GPU_STATE, "gauge", "GPU state: 0 ok, 1 lost, 2 stale, 3 error.")
    for g in present:
        out.append(f"{names.GPU_STATE}{{{full[g.rack_index]}}} {gpu_cols['state'][row_of[g.rack_index]]}")
    for spec in _GPU_SPECS:
        column = gpu_cols[spec.column]
        _header(out, spec.name, spec.type, spec.help)
        for g in present:
            value = column[row_of[g.rack_index]]
            if value is not None:
                out.append(f"{spec.name}{{{full[g.rack_index]}}} {_page_value(value, spec.scale)}")
    tally = xids or XidTally()
    _header(out, names.XID_LAST, "gauge", "Value of the last XID error encountered.")
    for g in present:
        out.append(f"{names.XID_LAST}{{{full[g.rack_index]}}} {tally.last.get(g.rack_index, 0)}")
    _header(out, names.XID_COUNT, "counter", "XID errors seen since the agent started, by XID.")
    for (rack, xid), count in sorted(tally.counts.items()):
        if rack in short:
            out.append(f'{names.XID_COUNT}{{{short[rack]},{names.LABEL_XID}="{xid}"}} {count}')
    link_cols = frame.table("nvlink")
    order = sorted(range(len(link_cols["gpu"])), key=lambda i: (link_cols["gpu"][i], link_cols["link"][i]))
    keys = [
        (i, f'{short[link_cols["gpu"][i]]},{names.LABEL_LINK}="{link_cols["link"][i]}"')
        for i in order
        if link_cols["gpu"][i] in short
    ]
    for spec in _LINK_SPECS:
        column = link_cols[spec.column]
        _header(out, spec.name, spec.type, spec.help)
        out.extend(
            f"{spec.name}{{{labels}}} {_page_value(column[i], spec.scale)}"
            for i, labels in keys
            if column[i] is not None
        )
    out.append("")
    return "\n".join(out)
