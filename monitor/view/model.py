"""The rack view model: what the TUI draws, built from frames and free of any UI toolkit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pynvml

from collectors.rack import GPUS, GPUS_PER_TRAY, gpu_label, gpu_place
from monitor.view.layout import RACK, GpuLayout
from storage.rack_total import RackTotal
from storage.schemas import EventKind

NVLINK_MAX_TBPS = RACK.nvlink_max_tbps()
"""The rack's NVLink ceiling, TX+RX over every link of every GPU (about 137.7 TB/s)."""


class CellState(StrEnum):
    """How a GPU's cell reads: the collector's GpuState, plus what only a reader can tell."""

    OK = "ok"
    LOST = "lost"
    STALE = "stale"
    """The source did not answer, or the GPU's newest row is older than 3 intervals."""
    ERROR = "error"
    NO_DATA = "no data"
    """No frame in the window has a row for this GPU."""


CLOCK_REASONS: tuple[tuple[int, str], ...] = (
    (pynvml.nvmlClocksEventReasonGpuIdle, "idle"),
    (pynvml.nvmlClocksEventReasonApplicationsClocksSetting, "app-clocks"),
    (pynvml.nvmlClocksEventReasonSwPowerCap, "sw-power-cap"),
    (pynvml.nvmlClocksEventReasonHwSlowdown, "hw-slowdown"),
    (pynvml.nvmlClocksEventReasonSyncBoost, "sync-boost"),
    (pynvml.nvmlClocksEventReasonSwThermalSlowdown, "sw-thermal"),
    (pynvml.nvmlClocksEventReasonHwThermalSlowdown, "hw-thermal"),
    (pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown, "power-brake"),
    (pynvml.nvmlClocksEventReasonDisplayClockSetting, "display"),
)
"""nvmlClocksEventReason bits and the short names an operator reads."""


def clock_reason_names(mask: int | None) -> tuple[str, ...]:
    """The names of the bits set in a clocks-event-reasons mask; () for none or unknown."""
    if not mask:
        return ()
    return tuple(name for bit, name in CLOCK_REASONS if mask & bit)


XID_NAMES: dict[int, str] = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    48: "double-bit ECC error",
    63: "ECC page retirement / row remap",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    109: "context switch timeout",
    119: "GSP RPC timeout",
    120: "GSP error",
    121: "C2C link error",
    140: "unrecovered ECC error",
    144: "NVLink SAW error",
    145: "NVLink RLW error",
    146: "NVLink TLW error",
    147: "NVLink TREX error",
    148: "NVLink NVLPW_CTRL error",
    149: "NVLink NETIR error",
    150: "NVLink MSE error",
    154: "GPU recovery action changed",
    155: "NVLink SW-defined error",
}
"""XIDs worth naming when the source sent no detail (dcgm-exporter's list, see reference/nvml.md)."""

EVENT_TAGS: dict[str, str] = {
    EventKind.XID: "XID",
    EventKind.CLOCKS_EVENT: "CLOCKS",
    EventKind.LINK_DOWN: "LINK DOWN",
    EventKind.LINK_UP: "LINK UP",
    EventKind.GPU_LOST: "GPU LOST",
    EventKind.GPU_RECOVERED: "GPU BACK",
    EventKind.ENDPOINT_DOWN: "EP DOWN",
    EventKind.ENDPOINT_UP: "EP UP",
    EventKind.ALERT: "ALERT",
    EventKind.ALERT_CLEARED: "CLEARED",
    EventKind.COLLECTOR_LATE: "LATE",
    EventKind.RECORDING_STOPPED: "REC STOP",
    EventKind.RECORDING_RESUMED: "REC OK",
}
"""The fixed-width tag each event kind gets in the log."""


def clock_text(ts_ms: int) -> str:
    """A timestamp as UTC wall time 'HH:MM:SSZ' (UTC so every operator and every replay agree)."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class EventView:
    """One event, ready to print."""

    ts_ms: int
    kind: str
    gpu: int | None
    link: int | None
    code: int | None
    source: str | None
    detail: str | None
    gpu_name: str | None = None
    """How the view names the event's GPU when it is not a rack GPU's label (GPU3 on a board host)."""

    @property
    def severe(self) -> bool:
        """Events an operator must act on (shown in the error colour)."""
        return self.kind in (EventKind.XID, EventKind.GPU_LOST, EventKind.LINK_DOWN, EventKind.ALERT)

    @property
    def where(self) -> str:
        """What the event is about: its GPU's label, else its source (an endpoint, a tray), else 'rack'."""
        if self.gpu_name is not None:
            return self.gpu_name
        return (
            gpu_label(self.gpu) if self.gpu is not None and 0 <= self.gpu < GPUS else (self.source or "rack")
        )

    @property
    def text(self) -> str:
        """'12:00:03 XID 79    T16.G2 GPU has fallen off the bus' (UTC; columns line up)."""
        tag = EVENT_TAGS.get(self.kind, self.kind.upper())
        if self.kind == EventKind.XID and self.code is not None:
            tag = f"XID {self.code}"
        where = self.where
        if self.link is not None:
            where += f" L{self.link}"
        return f"{clock_text(self.ts_ms)[:-1]} {tag:<9} {where:<6} {self.describe()}"

    def describe(self) -> str:
        """The event's detail, or a description built from its code."""
        if self.detail:
            return self.detail
        if self.kind == EventKind.XID and self.code is not None:
            return XID_NAMES.get(self.code, "")
        if self.kind == EventKind.CLOCKS_EVENT:
            return ", ".join(clock_reason_names(self.code)) or "none"
        return f"via {self.source}" if self.source else ""


@dataclass(frozen=True, slots=True)
class GpuView:
    """One GPU as the heatmap and the detail panel show it.

    Attributes:
        index: rack index 0..71.
        state: how the cell reads.
        age_s: for a stale GPU, seconds since its last good row (None when unknown).
        values: the value of each metric by Metric.name (None where not reported).
        row: the GPU's newest row in the store's integer units (empty when there is none).
        clock_reasons: the names of its active clocks-event reasons.
        name: how the view names it when that is not its rack label ('GPU3' on a board host).
    """

    index: int
    state: CellState
    age_s: float | None = None
    uuid: str | None = None
    values: Mapping[str, float | None] = field(default_factory=dict)
    row: Mapping[str, Any] = field(default_factory=dict)
    clock_reasons: tuple[str, ...] = ()
    name: str | None = None

    @property
    def label(self) -> str:
        """'T16.G2' (or its name on a host that is not in a rack)."""
        return self.name if self.name is not None else gpu_label(self.index)

    @property
    def tray(self) -> int:
        """Compute tray 1..18."""
        return gpu_place(self.index)[0]

    @property
    def module(self) -> int:
        """Module 1..4 within the tray."""
        return gpu_place(self.index)[1]


@dataclass(frozen=True, slots=True)
class SwitchTrayView:
    """The NVLinks landing on one switch tray (its two chips), summed over all 72 GPUs.

    Attributes:
        number: switch tray 1..9.
        links_up: links of the tray's chips reported active (of links_total).
        gbps: TX+RX through the tray's chips in GB/s (None when no rate could be derived).
        errors: NVLink error-counter increase on the tray's links over the error window.
    """

    number: int
    links_up: int | None
    links_total: int
    gbps: float | None
    errors: int | None

    @property
    def chips(self) -> tuple[int, int]:
        """The tray's switch chips, numbered 1..18 as the links that land on them (link k -> chip k+1)."""
        return 2 * self.number - 1, 2 * self.number


@dataclass(frozen=True, slots=True)
class LinkTrouble:
    """One NVLink that is down or whose error counters grew within the error window (most links: neither).

    Attributes:
        down: the newest row reports it inactive.
        samples: samples of the window in which its error counters grew (monitor.view.nvlink's climbing).
        errors: their growth over the window.
    """

    gpu: int
    link: int
    down: bool
    samples: int
    errors: int


@dataclass(frozen=True, slots=True)
class RackTotals:
    """The figures on the totals bar; power and tokens/s follow storage.rack_total's rule.

    Attributes:
        power_kw: rack power at the newest tick over the GPUs that reported (power_covered of gpus_total).
        tokens_per_s: the sum of the endpoints' rates over the rate window (tokens_covered of endpoints).
    """

    gpus_ok: int = 0
    gpus_lost: int = 0
    gpus_stale: int = 0
    gpus_error: int = 0
    gpus_total: int = GPUS
    power_kw: float | None = None
    power_covered: int = 0
    power_limit_kw: float | None = None
    nvlink_tbps: float | None = None
    nvlink_text: str = "-- TB/s"
    """The NVLink total as every view writes it, with what it covers (monitor.view.nvlink)."""
    tokens_per_s: float | None = None
    tokens_covered: int = 0
    endpoints: int = 0

    @property
    def power(self) -> RackTotal:
        """Rack power with what it covers."""
        return RackTotal(self.power_kw, self.power_covered, self.gpus_total)

    @property
    def tokens(self) -> RackTotal:
        """Rack tokens/s with what it covers."""
        return RackTotal(self.tokens_per_s, self.tokens_covered, self.endpoints)


@dataclass(frozen=True, slots=True)
class RackSnapshot:
    """Everything the rack view draws for one moment: 72 GPU slots (the layout's hold data), 9 switch trays,
    totals over the layout's GPUs, history, events.

    Attributes:
        ts_ms: the newest frame's time (None before any frame arrived).
        interval_ms: the collection interval the snapshot was built with (stale = 3 of these).
        gpus: 72 GPU views in rack index order.
        switches: 9 switch-tray views, top to bottom.
        power_history_kw: rack power per frame, oldest first.
        nvlink_history_tbps: rack NVLink TX+RX per frame pair, oldest first.
        events: newest first.
        version: the head version the snapshot was built from (0 when not from a head).
        layout: which GPUs exist and how they are drawn (the rack, or this host's; monitor.view.layout).
        links: the links down or with growing error counters, by (gpu, link).
    """

    ts_ms: int | None
    interval_ms: int
    gpus: tuple[GpuView, ...]
    switches: tuple[SwitchTrayView, ...]
    totals: RackTotals
    power_history_kw: tuple[float, ...] = ()
    nvlink_history_tbps: tuple[float, ...] = ()
    events: tuple[EventView, ...] = ()
    version: int = 0
    layout: GpuLayout = RACK
    links: tuple[LinkTrouble, ...] = ()

    @classmethod
    def empty(cls, layout: GpuLayout = RACK) -> RackSnapshot:
        """The snapshot shown before the first frame: every GPU of `layout` without data."""
        return cls(
            ts_ms=None,
            interval_ms=1000,
            gpus=tuple(GpuView(i, CellState.NO_DATA, name=layout.name(i)) for i in range(GPUS)),
            switches=tuple(SwitchTrayView(n, None, 2 * GPUS, None, None) for n in range(1, 10)),
            totals=RackTotals(gpus_total=len(layout.gpus)),
            layout=layout,
        )

    def gpu(self, index: int) -> GpuView:
        """The view of rack GPU `index`."""
        return self.gpus[index]

    def tray(self, tray: int) -> tuple[GpuView, ...]:
        """The 4 GPUs of compute tray 1..18."""
        start = (tray - 1) * GPUS_PER_TRAY
        return self.gpus[start : start + GPUS_PER_TRAY]
