"""The store's tables as plain data: their columns (name, Arrow type name, nullability) and the codes
their values use. No pyarrow here: the agent renders a tray's tick from these without loading Arrow
(storage.schemas builds the Arrow schemas from them; docs/benchmarks.md, issue 18's agent figures).

Values are kept in the units the source reports natively (mW, MiB, MHz, KiB, mJ) as integers, ratios
are quantised to integers, and counters are stored raw so that rates are derived at read time with
reset detection (serving's counters are running totals of per-series increases taken at scrape time,
so one engine's reset cannot read as a reset of the endpoint; see SERVING). Wide tables keep one row
per entity per tick: a long (metric, value) layout repeats each series' labels on every value and
mixes unrelated values in one column, which defeats per-column delta and dictionary encodings
(docs/benchmarks.md, 'The store', has this layout's bytes per sample).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any, NamedTuple

Q4_SCALE = 10_000
"""Ratios (0..1) are stored as int16 = round(ratio * Q4_SCALE)."""


class Column(NamedTuple):
    """One column of a table."""

    name: str
    type: str
    """"ts" (epoch milliseconds, UTC: storage.schemas.TS), or an Arrow type's name: int8, int16, int32,
    int64, float64, string."""
    nullable: bool = True


INT_BOUNDS: dict[str, tuple[int, int]] = {
    f"int{bits}": (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) for bits in (8, 16, 32, 64)
}
"""The values each integer type holds."""


class GpuState(IntEnum):
    """The health of one GPU's row, as the collector saw it."""

    OK = 0
    LOST = 1
    """NVML answered GPU_IS_LOST (XID 79, fallen off the bus); metrics are null."""
    STALE = 2
    """The source that reports this GPU did not answer this tick; metrics are null."""
    ERROR = 3
    """The GPU answered but a whole-device call failed this tick (e.g. NVML_ERROR_UNKNOWN)."""


class EndpointState(IntEnum):
    """The state of a scraped endpoint (a tray agent, a dcgm-exporter or an inference server)."""

    OK = 0
    STALE = 1
    DOWN = 2
    PARTIAL = 3
    """The page answered but covers only part of the server: a series (one engine's, one rank's) was
    NaN or missing. The row keeps what answered; counters still count every series that did."""


class EventKind:
    """Values of events.kind. Plain strings so the Parquet column dictionary-encodes them."""

    XID = "xid"
    CLOCKS_EVENT = "clocks_event"
    LINK_DOWN = "link_down"
    LINK_UP = "link_up"
    GPU_LOST = "gpu_lost"
    GPU_RECOVERED = "gpu_recovered"
    """A GPU that was lost answers again (same rack index; its rows continue)."""
    ENDPOINT_DOWN = "endpoint_down"
    ENDPOINT_UP = "endpoint_up"
    ALERT = "alert"
    ALERT_CLEARED = "alert_cleared"
    COLLECTOR_LATE = "collector_late"
    """The collector itself fell behind (a starved thread, a late tick): one event, not one per endpoint."""
    RECORDING_STOPPED = "recording_stopped"
    """The store refused a write (a full disk): frames are held in memory and retried."""
    RECORDING_RESUMED = "recording_resumed"
    """The store takes writes again; the detail says what was dropped meanwhile."""


GPU = (
    Column("ts", "ts", nullable=False),
    # rack index 0..71 = (tray - 1) * 4 + (module - 1); on a host not in a rack (tray 0), its NVML index
    Column("gpu", "int16", nullable=False),
    Column("uuid", "string", nullable=False),
    Column("tray", "int8", nullable=False),  # compute tray 1..18; 0: not in a rack (an HGX board)
    Column("state", "int8", nullable=False),  # GpuState
    Column("util_gpu_pct", "int8"),
    Column("util_mem_pct", "int8"),
    Column("mem_used_mib", "int32"),
    Column("mem_total_mib", "int32"),
    Column("power_mw", "int32"),
    Column("power_limit_mw", "int32"),
    Column("energy_mj", "int64"),  # counter since driver load
    Column("temp_gpu_c", "int16"),
    Column("temp_mem_c", "int16"),
    Column("temp_margin_c", "int16"),  # distance to slowdown (T.Limit)
    Column("sm_clock_mhz", "int16"),
    Column("mem_clock_mhz", "int16"),
    Column("clocks_event_reasons", "int64"),  # nvmlClocksEventReason* bitmask
    Column("pstate", "int8"),
    Column("ecc_corrected", "int64"),  # volatile total, counter
    Column("ecc_uncorrected", "int64"),  # volatile total, counter
    Column("nvlink_tx_kib", "int64"),  # all links, data payload, counter
    Column("nvlink_rx_kib", "int64"),
    Column("nvlink_up", "int8"),  # links in NVML_NVLINK_STATE_ACTIVE
)
"""One row per GPU per tick."""

NVLINK = (
    Column("ts", "ts", nullable=False),
    Column("gpu", "int16", nullable=False),
    Column("link", "int8", nullable=False),  # 0..17; link k lands on switch chip k
    Column("state", "int8"),  # NVML_NVLINK_STATE_*: 0 inactive, 1 active, 2 sleep, 3 no traffic
    Column("tx_kib", "int64"),  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, counter
    Column("rx_kib", "int64"),  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, counter
    Column("rx_errors", "int64"),  # NVML_FI_DEV_NVLINK_COUNT_RCV_ERRORS, counter
    Column("symbol_errors", "int64"),  # NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS, counter
    Column("recovery", "int64"),  # NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_EVENTS, counter
    Column("recovery_failed", "int64"),  # ..._LINK_RECOVERY_FAILED_EVENTS, counter
)
"""One row per GPU per NVLink link per tick (72 x 18 = 1,296 rows a tick)."""

EVENTS = (
    Column("ts", "ts", nullable=False),
    Column("kind", "string", nullable=False),  # EventKind
    Column("gpu", "int16"),  # null for events not tied to one GPU
    Column("link", "int8"),
    Column("code", "int64"),  # XID number, clocks-event bitmask, alert id...
    Column("source", "string"),  # host or endpoint that reported it
    Column("detail", "string"),
)
"""Sparse: one row per thing that happened."""

PROCESSES = (
    Column("ts", "ts", nullable=False),
    Column("gpu", "int16", nullable=False),
    Column("pid", "int32", nullable=False),
    Column("name", "string"),
    Column("used_mib", "int32"),
)
"""The compute processes on each GPU, sampled every few ticks."""

SERVING = (
    Column("ts", "ts", nullable=False),
    Column("endpoint", "string", nullable=False),  # the scraped URL's instance name
    Column("engine", "string", nullable=False),  # vllm, sglang, trtllm, triton, dynamo
    Column("model", "string"),
    Column("gpus", "string"),  # rack GPU indices it runs on, "8,9,10,11" (from the rack config)
    Column("state", "int8", nullable=False),  # EndpointState
    Column("prompt_tokens", "int64"),  # counter
    Column("generation_tokens", "int64"),  # counter
    Column("requests_ok", "int64"),  # counter
    Column("preemptions", "int64"),  # counter
    # Prompt tokens served from the prefix (KV) cache instead of computed; hit rate: its rate / prompt's
    Column("cached_tokens", "int64"),  # counter
    Column("running", "int32"),
    Column("waiting", "int32"),
    Column("kv_cache_q4", "int16"),  # KV-cache use, ratio * Q4_SCALE
    # Repeats of a series on the page, dropped (the first sample counts, as in Prometheus); null: no page
    Column("dup_samples", "int32"),
)
"""One row per inference endpoint per tick. The counter columns are running totals of per-series
increases since the collector first saw the endpoint (collectors.series_counters)."""

SERVING_HIST = (
    Column("ts", "ts", nullable=False),
    Column("endpoint", "string", nullable=False),
    Column("metric", "string", nullable=False),  # ttft, itl, e2e, queue, prefill
    Column("le", "float64", nullable=False),  # bucket upper bound in seconds; +inf = count
    Column("count", "int64", nullable=False),  # cumulative bucket counter
    Column("sum_s", "float64"),  # the histogram's _sum, on the +inf row only
)
"""Latency histograms, bucket by bucket, so percentiles can be computed over any window."""

HOST = (
    Column("ts", "ts", nullable=False),
    Column("host", "string", nullable=False),  # the collecting host's name
    Column("cpu_util_q4", "int16"),  # all cores busy, ratio * Q4_SCALE
    Column("load1_milli", "int32"),  # 1-minute load average * 1000
    Column("cpu_count", "int16"),
    Column("mem_total_kib", "int64"),
    Column("mem_available_kib", "int64"),
    Column("swap_used_kib", "int64"),
    Column("disk_total_mib", "int64"),  # the filesystem holding the store
    Column("disk_free_mib", "int64"),
    Column("disk_read_bytes", "int64"),  # all block devices, counter
    Column("disk_write_bytes", "int64"),  # counter
    Column("net_rx_bytes", "int64"),  # all interfaces, counter
    Column("net_tx_bytes", "int64"),  # counter
)
"""One row per collecting host per tick (psutil), so a slow collector can be told from a slow rack."""

TABLES: dict[str, tuple[Column, ...]] = {
    "gpu": GPU,
    "nvlink": NVLINK,
    "events": EVENTS,
    "processes": PROCESSES,
    "serving": SERVING,
    "serving_hist": SERVING_HIST,
    "host": HOST,
}
"""Every table a Frame may carry, by name."""

Columns = dict[str, list[Any]]
"""A table's columns by name, each a list with one value per row."""


def checked_columns(table: str, columns: Mapping[str, list[Any]]) -> Columns:
    """Every column of `table`, from `columns` (an absent one null), with each integer that its
    column's type cannot hold made null.

    Drivers answer "not available" with sentinels such as 0xFFFFFFFF, and u64 counters can exceed
    int64; one such value must cost a cell, not the tick.

    Raises:
        KeyError: a column `table` does not have.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    known = {c.name for c in TABLES[table]}
    extra = set(columns) - known
    if extra:
        raise KeyError(f"{table} has no column {sorted(extra)[0]!r}")
    out: Columns = {}
    for column in TABLES[table]:
        values = columns.get(column.name)
        if values is None:
            out[column.name] = [None] * n
            continue
        bounds = INT_BOUNDS.get(column.type)
        out[column.name] = values if bounds is None or _fits(values, *bounds) else _nulled(values, *bounds)
    return out


def _fits(values: list[Any], lo: int, hi: int) -> bool:
    present = [v for v in values if v is not None]
    if not present:
        return True
    kinds = set(map(type, present))  # the few types there are, not one isinstance per value
    return all(issubclass(kind, int) for kind in kinds) and lo <= min(present) and max(present) <= hi


def _nulled(values: list[Any], lo: int, hi: int) -> list[Any]:
    return [v if v is None or (isinstance(v, int) and lo <= v <= hi) else None for v in values]
