"""A tray's frame as an Arrow IPC stream: what our agent answers when the scraper asks for Arrow.

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

decode_tray_stream validates everything a reader relies on and raises MappingError with one line
otherwise; the mapper (GpuPageMapper.map_stream) then applies the text path's value checks, placement
and event rules, so the two answers give the same rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from collectors import agent_names as names
from collectors.mappings.agent_page import AgentGpu, XidTally
from collectors.mappings.common import MappingError, column_ranges
from collectors.rack import GPUS, LINKS_PER_GPU
from storage.frame import Frame
from storage.schemas import TABLES, TS

MEDIA_TYPE = "application/vnd.apache.arrow.stream"
"""The Arrow IPC streaming format's media type, registered with IANA
(https://www.iana.org/assignments/media-types/application/vnd.apache.arrow.stream; Apache Arrow's
docs, format/Columnar.html "IPC Streaming Format")."""
VERSION = "1"
VERSION_KEY = b"rackmon.tray_stream"
"""Schema metadata key whose value is VERSION: a stream without it, or of another version, is refused."""
HOSTNAME_KEY = b"rackmon.hostname"

_GPU_TYPES = {f.name: f.type for f in TABLES["gpu"]}
_LINK_TYPES = {f.name: f.type for f in TABLES["nvlink"]}
GPU_COLUMNS = tuple(spec.column for spec in names.GPU_METRICS)
LINK_COLUMNS = tuple(spec.column for spec in names.NVLINK_METRICS)

_GPU_STRUCT = pa.struct(
    [
        pa.field("uuid", pa.string()),
        pa.field("tray", pa.int16()),
        pa.field("module", pa.int16()),
        pa.field("state", pa.int8()),
        pa.field("xid_last", pa.int64()),
        *(pa.field(c, _GPU_TYPES[c]) for c in GPU_COLUMNS),
    ]
)
_LINK_STRUCT = pa.struct(
    [
        pa.field("gpu", pa.int16()),
        pa.field("link", pa.int8()),
        *(pa.field(c, _LINK_TYPES[c]) for c in LINK_COLUMNS),
    ]
)
_XID_STRUCT = pa.struct(
    [pa.field("gpu", pa.int16()), pa.field("xid", pa.int64()), pa.field("count", pa.int64())]
)
SCHEMA = pa.schema(
    [
        pa.field("gpu", pa.list_(_GPU_STRUCT)),
        pa.field("nvlink", pa.list_(_LINK_STRUCT)),
        pa.field("xid", pa.list_(_XID_STRUCT)),
    ]
)
"""The stream's schema (without its metadata, which names the version and the host)."""


MOST_ROWS = {"gpu": GPUS, "nvlink": GPUS * LINKS_PER_GPU, "xid": 10_000}
"""Rows a stream may have per list (a whole rack's GPUs and links; XIDs seen): more is refused unread,
so mapping a stream never costs more than a rack's worth (the text path has its page budget for this)."""


@dataclass(frozen=True)
class TrayStream:
    """A decoded, validated tray stream: one batch per list, and the host name ("" when none)."""

    gpu: pa.RecordBatch
    nvlink: pa.RecordBatch
    xid: pa.RecordBatch
    hostname: str


def frame_to_tray_stream(
    frame: Frame, gpus: Sequence[AgentGpu], *, hostname: str = "", xids: XidTally | None = None
) -> bytes:
    """The Arrow answer for the frame frame_to_agent_page renders: the same GPUs, links and XIDs.

    GPUs without a row in the frame, and their links and XIDs, are left out, as on the text page.
    """
    gpu = frame.table("gpu")
    row_of = {g: i for i, g in enumerate(gpu.column("gpu").to_pylist())}
    # In rack order, as the reader's frame has them: its columns then go in as they are.
    present = sorted((g for g in gpus if g.rack_index in row_of), key=lambda g: g.rack_index)
    gpu = _in_order(gpu, [row_of[g.rack_index] for g in present])
    tally = xids or XidTally()
    racks = {g.rack_index for g in present}
    gpu_arrays = [
        pa.array([g.uuid for g in present], pa.string()),
        pa.array([g.tray for g in present], pa.int16()),
        pa.array([g.module for g in present], pa.int16()),
        gpu.column("state"),
        pa.array([tally.last.get(g.rack_index, 0) for g in present], pa.int64()),
        *(gpu.column(c) for c in GPU_COLUMNS),
    ]
    links = frame.table("nvlink")
    keys = list(zip(links.column("gpu").to_pylist(), links.column("link").to_pylist(), strict=True))
    wanted = [i for i in sorted(range(len(keys)), key=keys.__getitem__) if keys[i][0] in racks]
    links = _in_order(links, wanted)  # in (GPU, link) order, as the page: the reader's fast path
    counts = sorted((key, n) for key, n in tally.counts.items() if key[0] in racks)
    columns = [
        _one_list(pa.StructArray.from_arrays(gpu_arrays, fields=list(_GPU_STRUCT))),
        _one_list(
            pa.StructArray.from_arrays(
                [links.column(c) for c in ("gpu", "link", *LINK_COLUMNS)], fields=list(_LINK_STRUCT)
            )
        ),
        _one_list(
            pa.StructArray.from_arrays(
                [
                    pa.array([k[0] for k, _ in counts], pa.int16()),
                    pa.array([k[1] for k, _ in counts], pa.int64()),
                    pa.array([n for _, n in counts], pa.int64()),
                ],
                fields=list(_XID_STRUCT),
            )
        ),
    ]
    schema = SCHEMA.with_metadata({VERSION_KEY: VERSION.encode(), HOSTNAME_KEY: hostname.encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
    return sink.getvalue().to_pybytes()


def _in_order(batch: pa.RecordBatch, rows: list[int]) -> pa.RecordBatch:
    """`batch`'s `rows`, in that order: its runs of consecutive rows sliced and concatenated.

    Not `take`: that loads pyarrow.compute (8 MiB resident) into the agent, and a tray's rows come in
    a few runs (NVML enumerates GPUs in PCI order, each GPU's links together).
    """
    if rows == list(range(batch.num_rows)):
        return batch
    if not rows:
        return batch.slice(0, 0)
    starts = [i for i, row in enumerate(rows) if i == 0 or row != rows[i - 1] + 1]
    ends = [*starts[1:], len(rows)]
    return pa.concat_batches([batch.slice(rows[a], b - a) for a, b in zip(starts, ends, strict=True)])


def _one_list(values: pa.StructArray) -> pa.ListArray:
    """A one-row list array holding `values`."""
    return pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)


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
