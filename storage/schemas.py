"""Arrow schemas of the store's tables: the one contract between sources, the store and the views.

Values are kept in the units the source reports natively (mW, MiB, MHz, KiB, mJ) as integers, ratios
are quantised to integers, and counters are stored raw so that rates are derived at read time with
reset detection (serving's counters are running totals of per-series increases taken at scrape time,
so one engine's reset cannot read as a reset of the endpoint; see SERVING). Wide tables keep one row
per entity per tick: a long (metric, value) layout repeats each series' labels on every value and
mixes unrelated values in one column, which defeats per-column delta and dictionary encodings
(docs/benchmarks.md, 'The store', has this layout's bytes per sample).
"""

from __future__ import annotations

from enum import IntEnum

import pyarrow as pa

TS = pa.timestamp("ms", tz="UTC")
"""Every table's time column: epoch milliseconds, UTC, snapped to the tick that produced the row."""

Q4_SCALE = 10_000
"""Ratios (0..1) are stored as int16 = round(ratio * Q4_SCALE)."""


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


GPU = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        # rack index 0..71 = (tray - 1) * 4 + (module - 1); on a host not in a rack (tray 0), its NVML index
        pa.field("gpu", pa.int16(), nullable=False),
        pa.field("uuid", pa.string(), nullable=False),
        pa.field("tray", pa.int8(), nullable=False),  # compute tray 1..18; 0: not in a rack (an HGX board)
        pa.field("state", pa.int8(), nullable=False),  # GpuState
        pa.field("util_gpu_pct", pa.int8()),
        pa.field("util_mem_pct", pa.int8()),
        pa.field("mem_used_mib", pa.int32()),
        pa.field("mem_total_mib", pa.int32()),
        pa.field("power_mw", pa.int32()),
        pa.field("power_limit_mw", pa.int32()),
        pa.field("energy_mj", pa.int64()),  # counter since driver load
        pa.field("temp_gpu_c", pa.int16()),
        pa.field("temp_mem_c", pa.int16()),
        pa.field("temp_margin_c", pa.int16()),  # distance to slowdown (T.Limit)
        pa.field("sm_clock_mhz", pa.int16()),
        pa.field("mem_clock_mhz", pa.int16()),
        pa.field("clocks_event_reasons", pa.int64()),  # nvmlClocksEventReason* bitmask
        pa.field("pstate", pa.int8()),
        pa.field("ecc_corrected", pa.int64()),  # volatile total, counter
        pa.field("ecc_uncorrected", pa.int64()),  # volatile total, counter
        pa.field("nvlink_tx_kib", pa.int64()),  # all links, data payload, counter
        pa.field("nvlink_rx_kib", pa.int64()),
        pa.field("nvlink_up", pa.int8()),  # links in NVML_NVLINK_STATE_ACTIVE
    ]
)
"""One row per GPU per tick."""

NVLINK = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("gpu", pa.int16(), nullable=False),
        pa.field("link", pa.int8(), nullable=False),  # 0..17; link k lands on switch chip k
        pa.field("state", pa.int8()),  # NVML_NVLINK_STATE_*: 0 inactive, 1 active, 2 sleep, 3 no traffic
        pa.field("tx_kib", pa.int64()),  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, counter
        pa.field("rx_kib", pa.int64()),  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, counter
        pa.field("rx_errors", pa.int64()),  # NVML_FI_DEV_NVLINK_COUNT_RCV_ERRORS, counter
        pa.field("symbol_errors", pa.int64()),  # NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS, counter
        pa.field("recovery", pa.int64()),  # NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_EVENTS, counter
        pa.field("recovery_failed", pa.int64()),  # ..._LINK_RECOVERY_FAILED_EVENTS, counter
    ]
)
"""One row per GPU per NVLink link per tick (72 x 18 = 1,296 rows a tick)."""

EVENTS = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # EventKind
        pa.field("gpu", pa.int16()),  # null for events not tied to one GPU
        pa.field("link", pa.int8()),
        pa.field("code", pa.int64()),  # XID number, clocks-event bitmask, alert id...
        pa.field("source", pa.string()),  # host or endpoint that reported it
        pa.field("detail", pa.string()),
    ]
)
"""Sparse: one row per thing that happened."""

PROCESSES = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("gpu", pa.int16(), nullable=False),
        pa.field("pid", pa.int32(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("used_mib", pa.int32()),
    ]
)
"""The compute processes on each GPU, sampled every few ticks."""

SERVING = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("endpoint", pa.string(), nullable=False),  # the scraped URL's instance name
        pa.field("engine", pa.string(), nullable=False),  # vllm, sglang, trtllm, triton, dynamo
        pa.field("model", pa.string()),
        pa.field("gpus", pa.string()),  # rack GPU indices it runs on, "8,9,10,11" (from the rack config)
        pa.field("state", pa.int8(), nullable=False),  # EndpointState
        pa.field("prompt_tokens", pa.int64()),  # counter
        pa.field("generation_tokens", pa.int64()),  # counter
        pa.field("requests_ok", pa.int64()),  # counter
        pa.field("preemptions", pa.int64()),  # counter
        # Prompt tokens served from the prefix (KV) cache instead of computed; hit rate: its rate / prompt's
        pa.field("cached_tokens", pa.int64()),  # counter
        pa.field("running", pa.int32()),
        pa.field("waiting", pa.int32()),
        pa.field("kv_cache_q4", pa.int16()),  # KV-cache use, ratio * Q4_SCALE
        # Repeats of a series on the page, dropped (the first sample counts, as in Prometheus); null: no page
        pa.field("dup_samples", pa.int32()),
    ]
)
"""One row per inference endpoint per tick. The counter columns are running totals of per-series
increases since the collector first saw the endpoint (collectors.series_counters)."""

SERVING_HIST = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("endpoint", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),  # ttft, itl, e2e, queue, prefill
        pa.field("le", pa.float64(), nullable=False),  # bucket upper bound in seconds; +inf = count
        pa.field("count", pa.int64(), nullable=False),  # cumulative bucket counter
        pa.field("sum_s", pa.float64()),  # the histogram's _sum, on the +inf row only
    ]
)
"""Latency histograms, bucket by bucket, so percentiles can be computed over any window."""

HOST = pa.schema(
    [
        pa.field("ts", TS, nullable=False),
        pa.field("host", pa.string(), nullable=False),  # the collecting host's name
        pa.field("cpu_util_q4", pa.int16()),  # all cores busy, ratio * Q4_SCALE
        pa.field("load1_milli", pa.int32()),  # 1-minute load average * 1000
        pa.field("cpu_count", pa.int16()),
        pa.field("mem_total_kib", pa.int64()),
        pa.field("mem_available_kib", pa.int64()),
        pa.field("swap_used_kib", pa.int64()),
        pa.field("disk_total_mib", pa.int64()),  # the filesystem holding the store
        pa.field("disk_free_mib", pa.int64()),
        pa.field("disk_read_bytes", pa.int64()),  # all block devices, counter
        pa.field("disk_write_bytes", pa.int64()),  # counter
        pa.field("net_rx_bytes", pa.int64()),  # all interfaces, counter
        pa.field("net_tx_bytes", pa.int64()),  # counter
    ]
)
"""One row per collecting host per tick (psutil), so a slow collector can be told from a slow rack."""

TABLES: dict[str, pa.Schema] = {
    "gpu": GPU,
    "nvlink": NVLINK,
    "events": EVENTS,
    "processes": PROCESSES,
    "serving": SERVING,
    "serving_hist": SERVING_HIST,
    "host": HOST,
}
"""Every table a Frame may carry, by name."""

SORT_KEYS: dict[str, tuple[str, ...]] = {
    "gpu": ("gpu",),
    "nvlink": ("gpu", "link"),
    "events": (),
    "processes": ("gpu", "pid"),
    "serving": ("endpoint", "engine"),
    "serving_hist": ("endpoint", "metric", "le"),
    "host": ("host",),
}
"""The entity of each row. Segments are sorted by these columns, then ts; compacted files by 10-minute
time band first, then these, then ts, so a short window reads only its band's row groups."""

COUNTERS: dict[str, frozenset[str]] = {
    "gpu": frozenset({"energy_mj", "ecc_corrected", "ecc_uncorrected", "nvlink_tx_kib", "nvlink_rx_kib"}),
    "nvlink": frozenset({"tx_kib", "rx_kib", "rx_errors", "symbol_errors", "recovery", "recovery_failed"}),
    "events": frozenset(),
    "processes": frozenset(),
    "serving": frozenset(
        {"prompt_tokens", "generation_tokens", "requests_ok", "preemptions", "cached_tokens"}
    ),
    "serving_hist": frozenset({"count", "sum_s"}),
    "host": frozenset({"disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes"}),
}
"""Monotonic columns that may reset (driver reload, server restart): rates come from these at read time."""

NVLINK_ERRORS = ("rx_errors", "symbol_errors", "recovery", "recovery_failed")
"""The nvlink counters that count trouble, each its own series: the live link_errors alert, the link view
and the report's link faults watch these."""

GROWTH_COUNTS: dict[str, tuple[str, tuple[str, ...]]] = {"nvlink": ("errors_grew", NVLINK_ERRORS)}
"""Rollup columns that count a bucket's samples (after its first) in which any of the named counters grew:
what the link_errors rule counts, so the report can rule out a minute whose errors rose by a lot in
one sample without reading its raw rows (`_inc` counts errors, not samples)."""


def conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """`rows` in `schema`: columns in its order and types, a missing one as nulls.

    Files written before a column existed (a rollup's `_inc` or `errors_grew`) are read beside newer
    ones; a NULL there means "not recorded", which readers already treat as unknown."""
    for field in schema:
        if field.name not in rows.column_names:
            rows = rows.append_column(field.name, pa.nulls(rows.num_rows, field.type))
    return rows.select(schema.names).cast(schema)


def empty_batch(table: str) -> pa.RecordBatch:
    """An empty record batch of a table's schema."""
    return pa.RecordBatch.from_pylist([], schema=TABLES[table])
