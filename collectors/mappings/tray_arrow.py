"""A tray's Arrow IPC stream, read: what our agent answers when the scraper asks for Arrow.

The agent's /metrics page stays Prometheus text with dcgm-exporter's names (agent_page), the answer
for any scraper that does not name Arrow in its Accept header (Prometheus, dcgm dashboards). Our own
collector asks for MEDIA_TYPE first (collectors.scrape_http.TRAY_ACCEPT) and, on an Arrow answer,
takes the columns the page would have been rendered from without printing and parsing ~650 samples
(bench/bench_scrape.py; docs/agent-api.md).

The stream is one IPC stream (one schema) of one record batch of one row, whose three columns are
lists of structs, one list per table the tray's page is made from:
- `gpu`: per GPU its UUID, tray and module (what rackmon_gpu_info says: the collector places the GPU
  by them, as it does from the text page), state, the last XID, and one field per agent_names
  GPU_METRICS column in the store's type;
- `nvlink`: per link the GPU's rack index, the link and one field per NVLINK_METRICS column;
- `xid`: the agent's XID counts per (GPU, xid) since it started (rackmon_xid_errors_total).
One schema for three tables is why they travel as lists: an IPC stream has exactly one schema. The
schema's metadata carries VERSION_KEY (the format's version: a reader refuses any other) and the
host name (the page's Hostname label). Values are the store's integers (mW, KiB), never rescaled.

The agent writes it with collectors.mappings.tray_stream (on nanoarrow, without pyarrow), where its
fields are declared; SCHEMA here is built from them. decode_tray_stream validates everything a reader
relies on and raises MappingError with one line otherwise; the mapper (GpuPageMapper.map_stream) then
applies the text path's value checks, placement and event rules, so the two answers give the same rows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pyarrow as pa

from collectors import agent_names as names
from collectors.mappings.common import MappingError, column_ranges
from collectors.mappings.tray_stream import (
    HOSTNAME_KEY,
    LINK_COLUMNS,
    LISTS,
    MEDIA_TYPE,
    MOST_ROWS,
    VERSION,
    VERSION_KEY,
)
from collectors.rack import LINKS_PER_GPU
from storage.schemas import ARROW_TYPES, TABLES, TS

__all__ = ["MEDIA_TYPE", "SCHEMA", "TrayStream", "decode_tray_stream", "in_range", "stream_links"]

_LINK_TYPES = {f.name: f.type for f in TABLES["nvlink"]}


def _struct(table: str) -> pa.StructType:
    return pa.struct([pa.field(name, ARROW_TYPES[kind]) for name, kind in LISTS[table]])


SCHEMA = pa.schema([pa.field(table, pa.list_(_struct(table))) for table in LISTS])
"""The stream's schema (without its metadata, which names the version and the host)."""


@dataclass(frozen=True)
class TrayStream:
    """A decoded, validated tray stream: one batch per list, and the host name ("" when none)."""

    gpu: pa.RecordBatch
    nvlink: pa.RecordBatch
    xid: pa.RecordBatch
    hostname: str


def decode_tray_stream(body: bytes) -> TrayStream:
    """Read and validate a tray stream.

    Raises:
        MappingError: not an Arrow IPC stream, another schema or version, not exactly one row, null
            structs, or lists of the wrong shape (one line, for the endpoint's state).
    """
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(body))
        schema = reader.schema
        metadata = schema.metadata or {}
        version = metadata.get(VERSION_KEY)
        if version != VERSION.encode():
            shown = "none" if version is None else version.decode(errors="replace")[:20]
            raise MappingError(f"Arrow stream of version {shown}, not {VERSION}")
        if not schema.equals(SCHEMA):
            raise MappingError("Arrow stream with another schema than a tray stream's")
        batches = list(reader)
        if len(batches) != 1 or batches[0].num_rows != 1:
            rows = sum(b.num_rows for b in batches)
            raise MappingError(f"Arrow stream of {rows} rows in {len(batches)} batches, not one row")
        batch = batches[0]
        rows = {name: _list_values(batch.column(name)) for name in MOST_ROWS}
        for name, most in MOST_ROWS.items():  # before any value is read: a stream's cost is bounded
            if len(rows[name]) > most:
                raise MappingError(f"Arrow stream with more than {most} {name} rows")
        batch.validate(full=True)
        parts = [_struct_batch(batch.column(name), rows[name], name) for name in ("gpu", "nvlink", "xid")]
    except (pa.ArrowException, OSError, ValueError) as err:
        raise MappingError(f"malformed Arrow stream: {str(err).splitlines()[0][:200]}") from None
    hostname = metadata.get(HOSTNAME_KEY, b"").decode("utf-8", errors="replace")
    return TrayStream(*parts, hostname=hostname)


def _list_values(column: pa.ListArray) -> pa.Array:
    """What column.flatten() gives for a one-row list column: its values array itself when the row
    spans it all (a writer's usual stream), without flatten's compute call (~10 us each, 6 a tray)."""
    offsets = column.offsets
    values = column.values
    if len(offsets) == 2 and offsets.to_pylist() == [0, len(values)] and not column.null_count:
        return values
    return column.flatten()


def _struct_batch(column: pa.Array, values: pa.Array, name: str) -> pa.RecordBatch:
    """The record batch of a one-row list<struct> column (no null list, no null struct, no null key);
    `values` is the column's flattened values (_list_values)."""
    if column.null_count:
        raise MappingError(f"Arrow stream: the {name} list is null")
    if values.null_count:
        raise MappingError(f"Arrow stream: a null {name} row")
    batch = pa.RecordBatch.from_struct_array(values)
    keys = {"gpu": ("uuid", "tray", "module"), "nvlink": ("gpu", "link"), "xid": ("gpu", "xid", "count")}[
        name
    ]
    for key in keys:
        if batch.column(key).null_count:
            raise MappingError(f"Arrow stream: a {name} row without {key}")
    return batch


_BLANK_INT = int(names.DCGM_BLANK_MIN)
"""DCGM's 'no value' sentinels as an integer bound: a value at or above it is null, as on the text path."""
_LINK_RANGES = column_ranges("nvlink")


def in_range(value: int | None, lo: int, hi: int) -> int | None:
    """`value` if it fits [lo, hi] and is no DCGM blank, else None (checked_int's rule for integers)."""
    if value is None or not lo <= value <= hi or value >= _BLANK_INT:
        return None
    return value


def stream_links(
    links: pa.RecordBatch, racks: set[int], ts_ms: int, source: str
) -> tuple[pa.RecordBatch | None, list[tuple[int, int]], list[list[int | None]]]:
    """A stream's links as the nvlink batch of tick `ts_ms`, its sorted (GPU, link) keys, and per
    NVLINK_METRICS column its values as a list.

    As the text path reads them: a link without any value is not there (the page prints no sample for
    it), a value out of its column's range is null, links in (GPU, link) order. In the usual stream
    (sorted, every value in range) the link columns go into the batch as the stream's arrays. Checked
    in Python, not pyarrow.compute: a compute call with a Python scalar costs ~70 us (it converts the
    scalar, trying imports each time), the ~1,300 values of a tray's links ~15 us as lists.

    Raises:
        MappingError: a link of a GPU not in `racks`, a link outside 0..17, a link twice.
    """
    columns = links.to_pydict()
    values = [columns[c] for c in LINK_COLUMNS]
    rows = range(links.num_rows)
    if any(links.column(c).null_count for c in LINK_COLUMNS):
        rows = [i for i in rows if any(column[i] is not None for column in values)]
    keys = [(columns["gpu"][i], columns["link"][i]) for i in rows]
    in_order = all(a < b for a, b in itertools.pairwise(keys))
    if not in_order:
        order = sorted(range(len(keys)), key=keys.__getitem__)
        rows = [rows[i] for i in order]
        keys = [keys[i] for i in order]
        if any(a == b for a, b in itertools.pairwise(keys)):
            raise MappingError(f"{source}: an NVLink twice in the Arrow stream")
    if any(g not in racks for g, _ in set(keys)):
        raise MappingError(f"{source}: an NVLink of a GPU not in the Arrow stream")
    if keys and not 0 <= min(n for _, n in keys) <= max(n for _, n in keys) < LINKS_PER_GPU:
        raise MappingError(f"{source}: an NVLink outside 0..{LINKS_PER_GPU - 1}")
    if not keys:
        return None, [], [[] for _ in LINK_COLUMNS]
    same_rows = len(keys) == links.num_rows and in_order
    if not same_rows:
        values = [[column[i] for i in rows] for column in values]
    arrays: list[pa.Array] = [pa.array([ts_ms] * len(keys), TS)]
    if same_rows:
        arrays += [links.column("gpu"), links.column("link")]
    else:
        arrays += [
            pa.array([k[0] for k in keys], _LINK_TYPES["gpu"]),
            pa.array([k[1] for k in keys], _LINK_TYPES["link"]),
        ]
    for n, column in enumerate(LINK_COLUMNS):
        lo, hi = _LINK_RANGES[column]
        present = [v for v in values[n] if v is not None]
        if present and not (lo <= min(present) and max(present) <= hi and max(present) < _BLANK_INT):
            values[n] = [in_range(v, lo, hi) for v in values[n]]
            arrays.append(pa.array(values[n], _LINK_TYPES[column]))
        else:
            arrays.append(links.column(column) if same_rows else pa.array(values[n], _LINK_TYPES[column]))
    return pa.RecordBatch.from_arrays(arrays, schema=TABLES["nvlink"]), keys, values
