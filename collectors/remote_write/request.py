"""Store rows to one WriteRequest in bulk: Arrow and numpy lay the samples out, protobuf encodes them.

A request holds one TimeSeries per (entity, column) with that entity's samples oldest first. The
costs that grow with the samples are kept out of Python loops where a library can do them:

- runs of rows of one entity are found by Arrow comparisons of the key columns (rows come sorted by
  entity, then time: series.ORDER_BY);
- each sample's value and timestamp are gathered into two flat lists, series by series, by one Arrow
  `take` (a table's value columns laid end to end, indexed by column * rows + row); a null cell is
  no sample;
- the request itself is kept between calls (RequestBuilder): while the request's shape (its series
  and how many samples each has) is the same as the last one's, as it is for a collector sending every
  `interval` seconds, only the samples' two fields are set again; the `protobuf` package (upb) then
  serializes it. A new shape is built by one parse of the series' cached label templates (serialized
  one-series WriteRequests made by protobuf; concatenated messages parse as one whose repeated fields
  are appended in order, protobuf's documented merge rule) and one `add()` per sample.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collectors.remote_write.wire import WriteRequest
from storage.schemas import TS

Series = list[tuple[bytes, int]]
"""An entity's series: (label template, value column) pairs; the same list object while unchanged."""


@dataclass
class TableRuns:
    """One table's rows as runs of one entity each, and its value columns end to end.

    Attributes:
        rows: the table's row count.
        starts / ends: [start, end) rows of each run.
        keys: each run's key columns' values (from its first row).
        values: every value column as float64, one after the other (column i's row r at i * rows + r);
            a null cell is no sample.
        stamps: the row times (epoch ms), repeated once per value column like `values`.
    """

    rows: int
    starts: list[int]
    ends: list[int]
    keys: list[tuple[Any, ...]]
    values: pa.Array
    stamps: pa.Array


def table_runs(
    table: pa.Table, key_columns: Sequence[str], value_columns: Sequence[pa.ChunkedArray]
) -> TableRuns:
    """Split `table` (sorted by its key columns, then ts) into runs; lay its value columns end to end."""
    rows = table.num_rows
    starts = [0] if rows else []
    if rows > 1:
        changed = functools.reduce(pc.or_, [_changes(table.column(c)) for c in key_columns])
        starts += [i + 1 for i in pc.indices_nonzero(changed).to_pylist()]
    ends = [*starts[1:], rows] if rows else []
    at = pa.array(starts, pa.int64())
    keys = list(zip(*(table.column(c).take(at).to_pylist() for c in key_columns), strict=True))
    # a double is what the wire carries (an integer counter past 2**53 would round, as protobuf would)
    chunks = [chunk for c in value_columns for chunk in c.cast(pa.float64(), safe=False).chunks]
    values = pa.concat_arrays(chunks) if chunks else pa.array([], pa.float64())
    stamps = table.column("ts").cast(TS).cast(pa.int64()).combine_chunks()
    stamps = pa.concat_arrays([stamps] * len(value_columns)) if value_columns else stamps
    return TableRuns(rows, starts, ends, keys, values, stamps)


def _changes(column: pa.ChunkedArray) -> pa.Array:
    """changes[i]: row i+1's value differs from row i's (null equals null only)."""
    rows = len(column)
    after, before = column.slice(1), column.slice(0, rows - 1)
    differs = pc.fill_null(pc.not_equal(after, before), False)
    if column.null_count:
        differs = pc.or_(differs, pc.not_equal(pc.is_null(after), pc.is_null(before)))
    return differs.combine_chunks() if isinstance(differs, pa.ChunkedArray) else differs


@dataclass
class _Layout:
    """Where one table's samples come from: its runs' series, and the cells they read in request order."""

    shape: tuple[int, list[int], list[Series]]
    templates: list[bytes]
    lengths: list[int]
    index: pa.Array


def _layout(runs: TableRuns, series: list[Series]) -> _Layout:
    templates: list[bytes] = []
    lengths: list[int] = []
    index: list[int] = []
    rows = runs.rows
    for entity, start, end in zip(series, runs.starts, runs.ends, strict=True):
        for template, column in entity:
            templates.append(template)
            lengths.append(end - start)
            index.extend(range(column * rows + start, column * rows + end))
    return _Layout((rows, runs.starts, series), templates, lengths, pa.array(index, pa.int64()))


class RequestBuilder:
    """Makes WriteRequests, reusing the last one while its series and their sample counts are the same.

    Per table, the cells each series reads (its layout) are kept while the table's runs and their
    series are the same as last time; the request and its Sample objects are kept while every
    table's layout and null cells are. Then a request costs Arrow `take`s and setting two fields of
    each Sample.
    """

    def __init__(self) -> None:
        """No request is held until the first `build`."""
        self._layouts: dict[str, _Layout] = {}
        self._shape: list[Any] = []
        self._request: Any = WriteRequest()
        self._slots: list[Any] = []
        self.samples = 0

    def build(self, tables: list[tuple[str, TableRuns, list[Series]]]) -> Any:
        """The WriteRequest for `tables` ((name, runs, each run's series), in request order).

        The request is this builder's and changes at the next `build`. `samples` counts its samples.
        """
        values: list[float] = []
        stamps: list[int] = []
        shape: list[Any] = []
        layouts: dict[str, _Layout] = {}
        for name, runs, series in tables:
            layout = self._layouts.get(name)
            if layout is None or layout.shape != (runs.rows, runs.starts, series):
                layout = _layout(runs, series)
            layouts[name] = layout
            cells = runs.values.take(layout.index)
            times = runs.stamps.take(layout.index)
            nulls: list[int] = []
            if cells.null_count:  # a null cell is no sample
                nulls = pc.indices_nonzero(cells.is_null()).to_pylist()
                valid = cells.is_valid()
                cells, times = cells.filter(valid), times.filter(valid)
            shape.append((layout, nulls))
            values.extend(cells.to_pylist())
            stamps.extend(times.to_pylist())
        self._layouts = layouts
        if shape != self._shape:
            self._reshape(shape)
        for slot, value, stamp in zip(self._slots, values, stamps, strict=True):
            slot.value = value
            slot.timestamp = stamp
        self.samples = len(values)
        return self._request

    def _reshape(self, shape: list[tuple[_Layout, list[int]]]) -> None:
        """A new request: its series' labels in one parse of their templates, then a Sample per cell."""
        templates: list[bytes] = []
        counts: list[int] = []
        for layout, nulls in shape:
            kept = list(layout.lengths)
            if nulls:
                series_of_cell = [i for i, n in enumerate(layout.lengths) for _ in range(n)]
                for cell in nulls:
                    kept[series_of_cell[cell]] -= 1
            templates += [t for t, n in zip(layout.templates, kept, strict=True) if n]
            counts += [n for n in kept if n]
        self._request = WriteRequest.FromString(b"".join(templates))
        slots: list[Any] = []
        for series, n in zip(self._request.timeseries, counts, strict=True):
            add = series.samples.add
            slots.extend([add() for _ in range(n)])
        self._shape, self._slots = shape, slots
