"""Stand-in rows for a source or endpoint that gave nothing for a tick: its GPUs, STALE, no metrics."""

from __future__ import annotations

import pyarrow as pa

from storage.schemas import GpuState

_IDENTITY = ("gpu", "uuid", "tray")


def stale_gpu_rows(last: pa.RecordBatch | None, ts_ms: int) -> pa.RecordBatch | None:
    """The GPUs reported last (`last`), stamped `ts_ms`, STALE with null metrics; None without any.

    A LOST GPU stays LOST even while its host is silent: that is the more important fact.
    """
    if last is None or not last.num_rows:
        return None
    n = last.num_rows
    states = last.column("state").to_pylist()
    arrays = []
    for column in last.schema:
        if column.name == "ts":
            arrays.append(pa.array([ts_ms] * n, type=column.type))
        elif column.name == "state":
            kept = [s if s == GpuState.LOST else int(GpuState.STALE) for s in states]
            arrays.append(pa.array(kept, type=column.type))
        elif column.name in _IDENTITY:
            arrays.append(last.column(column.name))
        else:
            arrays.append(pa.nulls(n, column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=last.schema)
