"""What a tray page's families and values mean for the store: metric names and their aliases, the
families GpuPageMapper reads, page values back in the store's integer units, and the gpu batch.

Split from collectors.mappings.gpu (the mapper's state and layout) so that the scrape source and the
PromQL source can ask which families to read without the mapper.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter

import pyarrow as pa

from collectors import agent_names as names
from collectors.mappings.common import checked_int, checked_ints, column_ranges
from collectors.nvml_fields import links_total
from collectors.promtext import Family
from collectors.rack import LINKS_PER_GPU
from storage.frame import batch_from_columns
from storage.schemas import TABLES

GPU_RANGES = column_ranges("gpu")
LINK_RANGES = column_ranges("nvlink")
GPU_SPECS = names.GPU_METRICS
LINK_SPECS = names.NVLINK_METRICS


def names_of(spec: names.MetricSpec) -> tuple[str, ...]:
    """Every name a spec's column is read from: its own, then its aliases."""
    return (spec.name, *spec.aliases, *spec.agent_aliases)


def family_of(spec: names.MetricSpec, families: Mapping[str, Family]) -> Family | None:
    """The page's family for `spec`: its current name, else an alias (an older agent's name).

    agent_aliases count only on an agent's page (it has rackmon_gpu_info): an older agent exported
    NVLink data payload as DCGM_FI_DEV_NVLINK_TX_BYTES_TOTAL, which on dcgm-exporter's page is DCGM
    field 1201 (all bytes sent, not the payload), a different counter that must not fill the column.
    """
    found = families.get(spec.name)
    if found is not None:
        return found
    for alias in spec.aliases:
        if alias in families:
            return families[alias]
    if names.GPU_INFO in families:
        for alias in spec.agent_aliases:
            if alias in families:
                return families[alias]
    return None


READ_FAMILIES = frozenset(
    {
        names.GPU_INFO,
        names.GPU_STATE,
        names.XID_LAST,
        names.XID_COUNT,
        names.FB_FREE,
        names.FB_RESERVED,
        *(name for spec in (*GPU_SPECS, *LINK_SPECS) for name in names_of(spec)),
    }
)
"""Every family GpuPageMapper reads: the parser's `want` filter (dcgm-exporter pages carry many more),
and what a PromQL source asks its backend for (collectors.promql_pages)."""
gpu_want = READ_FAMILIES.__contains__
"""The `want` filter for a tray page parsed outside the mapper (the scrape source parses with a budget)."""
LINK_STATE = [spec.column for spec in LINK_SPECS].index("state")


sample_name = itemgetter(0)
sample_labels = itemgetter(1)
sample_value = itemgetter(2)


def store_values(values: list[float], scale: float, lo: int, hi: int) -> list[int | None]:
    """from_page over a family's values in list passes (the per-call cost dominates otherwise)."""
    if scale != 1:
        values = [v // scale for v in values] if scale > 1 else [v / scale for v in values]
    return checked_ints(values, lo, hi)


def from_page(value: float, scale: float, lo: int, hi: int) -> int | None:
    """A page value back in the store's integer unit (None for NaN, DCGM blanks, out-of-range junk)."""
    if scale == 1:
        return checked_int(value, lo, hi)
    # Bytes -> KiB floors (dcgm-exporter's byte counters need not be whole KiB); W -> mW rounds.
    return checked_int(value // scale if scale > 1 else value / scale, lo, hi)


_LINK_TOTALS = (("nvlink_tx_kib", "tx_kib"), ("nvlink_rx_kib", "rx_kib"))
"""gpu all-link counter column -> the nvlink column whose per-link values sum to it."""
_LINK_COLUMN_AT = {spec.column: i for i, spec in enumerate(LINK_SPECS)}


def fill_link_totals(
    rows: dict[int, dict[str, int | None]], keys: list[tuple[int, int]], link_values: list[list[int | None]]
) -> None:
    """Where a GPU's all-link counter is 0 or absent while its links count, use the sum of its links."""
    for total_column, link_column in _LINK_TOTALS:
        per_gpu: dict[int, list[int | None]] = {}
        for (rack, _link), value in zip(keys, link_values[_LINK_COLUMN_AT[link_column]], strict=True):
            per_gpu.setdefault(rack, []).append(value)
        for rack, values in per_gpu.items():
            row = rows.get(rack)
            if row is not None and len(values) == LINKS_PER_GPU:
                row[total_column] = links_total(row.get(total_column), values)


_GPU_SCHEMA = TABLES["gpu"]


def gpu_batch(columns: Mapping[str, list[object]], kept: Mapping[str, pa.Array]) -> pa.RecordBatch:
    """storage.frame.batch_from_columns for `gpu`, taking the `kept` columns as they are."""
    if not kept:
        return batch_from_columns("gpu", columns)
    n = len(columns["gpu"])
    arrays = [
        kept[f.name]
        if f.name in kept
        else pa.array(columns[f.name], f.type)
        if f.name in columns
        else pa.nulls(n, f.type)
        for f in _GPU_SCHEMA
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_GPU_SCHEMA)
