"""The tray stream's format, and the agent's writer of it: a tray's tick as one Arrow IPC stream.

What the stream holds is described in collectors.mappings.tray_arrow, the collector's reader. Here is
the format as plain data (one list of typed fields per table: tray_arrow builds its pyarrow schema
from the same lists) and the writer, on nanoarrow (https://arrow.apache.org/nanoarrow/, Apache
Arrow's C library with its Python bindings): an agent answers both of its scrapers without loading
pyarrow (27 MiB resident against nanoarrow's 3; docs/benchmarks.md, issue 18's agent figures).
"""

from __future__ import annotations

import array
import io
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from collectors import agent_names as names
from collectors.mappings.agent_page import AgentGpu, XidTally
from collectors.rack import GPUS, LINKS_PER_GPU
from storage.columns import GPU, NVLINK
from storage.plain_frame import PlainFrame, as_plain

if TYPE_CHECKING:
    from storage.frame import Frame

MEDIA_TYPE = "application/vnd.apache.arrow.stream"
"""The Arrow IPC streaming format's media type, registered with IANA
(https://www.iana.org/assignments/media-types/application/vnd.apache.arrow.stream; Apache Arrow's
docs, format/Columnar.html "IPC Streaming Format")."""
VERSION = "1"
VERSION_KEY = b"rackmon.tray_stream"
"""Schema metadata key whose value is VERSION: a stream without it, or of another version, is refused."""
HOSTNAME_KEY = b"rackmon.hostname"

_GPU_TYPES = {c.name: c.type for c in GPU}
_LINK_TYPES = {c.name: c.type for c in NVLINK}
GPU_COLUMNS = tuple(spec.column for spec in names.GPU_METRICS)
LINK_COLUMNS = tuple(spec.column for spec in names.NVLINK_METRICS)

Fields = tuple[tuple[str, str], ...]
"""(name, storage.columns type name) of each field of a list's struct, in order."""
LISTS: dict[str, Fields] = {
    "gpu": (
        ("uuid", "string"),
        ("tray", "int16"),
        ("module", "int16"),
        ("state", "int8"),
        ("xid_last", "int64"),
        *((c, _GPU_TYPES[c]) for c in GPU_COLUMNS),
    ),
    "nvlink": (("gpu", "int16"), ("link", "int8"), *((c, _LINK_TYPES[c]) for c in LINK_COLUMNS)),
    "xid": (("gpu", "int16"), ("xid", "int64"), ("count", "int64")),
}
"""The stream's one row: a list<struct> column per table, in this order, every field nullable."""

MOST_ROWS = {"gpu": GPUS, "nvlink": GPUS * LINKS_PER_GPU, "xid": 10_000}
"""Rows a stream may have per list (a whole rack's GPUs and links; XIDs seen): more is refused unread,
so mapping a stream never costs more than a rack's worth (the text path has its page budget for this)."""


def frame_to_tray_stream(
    frame: PlainFrame | Frame,
    gpus: Sequence[AgentGpu],
    *,
    hostname: str = "",
    xids: XidTally | None = None,
) -> bytes:
    """The Arrow answer for the tick frame_to_agent_page renders: the same GPUs, links and XIDs.

    GPUs without a row in the frame, and their links and XIDs, are left out, as on the text page.
    GPUs go in rack order and links in (GPU, link) order, as the reader's frame has them.
    """
    frame = as_plain(frame)
    gpu = frame.table("gpu")
    row_of = {g: i for i, g in enumerate(gpu["gpu"])}
    present = sorted((g for g in gpus if g.rack_index in row_of), key=lambda g: g.rack_index)
    rows = [row_of[g.rack_index] for g in present]
    tally = xids or XidTally()
    gpu_values: dict[str, list[Any]] = {
        "uuid": [g.uuid for g in present],
        "tray": [g.tray for g in present],
        "module": [g.module for g in present],
        "state": [gpu["state"][i] for i in rows],
        "xid_last": [tally.last.get(g.rack_index, 0) for g in present],
        **{c: [gpu[c][i] for i in rows] for c in GPU_COLUMNS},
    }
    racks = {g.rack_index for g in present}
    links = frame.table("nvlink")
    keys = list(zip(links["gpu"], links["link"], strict=True))
    wanted = [i for i in sorted(range(len(keys)), key=keys.__getitem__) if keys[i][0] in racks]
    counts = sorted((key, n) for key, n in tally.counts.items() if key[0] in racks)
    values = {
        "gpu": gpu_values,
        "nvlink": {name: [links[name][i] for i in wanted] for name, _ in LISTS["nvlink"]},
        "xid": {
            "gpu": [key[0] for key, _ in counts],
            "xid": [key[1] for key, _ in counts],
            "count": [n for _, n in counts],
        },
    }
    return write_tray_stream(values, hostname)


def write_tray_stream(values: dict[str, dict[str, list[Any]]], hostname: str) -> bytes:
    """The stream of one row holding `values` (per LISTS table, its fields' values as lists)."""
    import nanoarrow as na  # here: `import collectors.mappings` must not load it
    import nanoarrow.ipc

    structs = _structs()
    lists = []
    for table, fields in LISTS.items():
        rows = len(values[table][fields[0][0]])
        children = [_array(values[table][name], kind) for name, kind in fields]
        items = na.c_array_from_buffers(structs[table], rows, [None], children=children)
        offsets = array.array("i", [0, rows])
        lists.append(na.c_array_from_buffers(na.list_(structs[table]), 1, [None, offsets], children=[items]))
    batch = na.c_array_from_buffers(_schema(hostname), 1, [None], children=lists)
    sink = io.BytesIO()
    with nanoarrow.ipc.StreamWriter.from_writable(sink) as writer:
        writer.write_stream(na.c_array_stream(batch))
    return sink.getvalue()


_CODES = {"int8": "b", "int16": "h", "int32": "i", "int64": "q"}
"""array.array's type code of each integer type (C's int is 32 bits wherever the agent runs)."""


@lru_cache(maxsize=1)
def _structs() -> dict[str, Any]:
    """Each list's struct type, made once (a nanoarrow schema of 20 fields takes ~0.2 ms to build)."""
    import nanoarrow as na

    return {table: na.struct({name: _type(kind) for name, kind in f}) for table, f in LISTS.items()}


@lru_cache(maxsize=4)
def _schema(hostname: str) -> Any:
    """The stream's schema, with the version and `hostname` in its metadata."""
    import nanoarrow as na

    return na.Schema(
        na.Type.STRUCT,
        fields=[na.Schema(na.list_(struct), name=table) for table, struct in _structs().items()],
        metadata={VERSION_KEY: VERSION.encode(), HOSTNAME_KEY: hostname.encode()},
    )


@lru_cache(maxsize=8)
def _type(kind: str) -> Any:
    """The nanoarrow type of a storage.columns type name (made once: ~7 us each)."""
    import nanoarrow as na

    return na.string() if kind == "string" else getattr(na, kind)()


def _array(values: list[Any], kind: str) -> Any:
    """A nanoarrow array of `values` (None: null): integers from their bytes, a validity bitmap when any
    is null (Arrow's layout: bit i of the bitmap, least significant first, says value i is present)."""
    import nanoarrow as na

    if kind == "string":
        return na.c_array(values, na.string())
    kind_type = _type(kind)
    if None not in values:
        return na.c_array_from_buffers(kind_type, len(values), [None, array.array(_CODES[kind], values)])
    bits = bytearray((len(values) + 7) // 8)
    for i, value in enumerate(values):
        if value is not None:
            bits[i >> 3] |= 1 << (i & 7)
    data = array.array(_CODES[kind], [0 if v is None else v for v in values])
    return na.c_array_from_buffers(kind_type, len(values), [bytes(bits), data])
