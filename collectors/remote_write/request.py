"""Store rows to one WriteRequest in bulk: Arrow and numpy lay the samples out, protobuf encodes them.

A request holds one TimeSeries per (entity, column) with that entity's samples oldest first. The
costs that grow with the samples are kept out of Python loops where a library can do them:

- runs of rows of one entity are found by Arrow comparisons of the key columns (rows come sorted by
  entity, then time: series.ORDER_BY);
- each sample's value and timestamp are gathered into two flat lists, series by series, by one Arrow
  `take` (a table's value columns laid end to end, indexed by column * rows + row); a null cell is
  no sample;
- the request is kept between calls in parts (RequestBuilder: a tray's GPUs and links, a server's
  histograms): while a part's shape (its series and how many samples each has) is the same as last
  time, as it is for a collector sending every `interval` seconds, only its samples' two fields are set
  again; the `protobuf` package (upb) then serializes it. A new shape is built by one parse of the
  series' cached label templates (serialized one-series WriteRequests made by protobuf; concatenated
  messages parse as one whose repeated fields are appended in order, protobuf's documented merge rule)
  and one `add()` per sample.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
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
    differs = pc.fill_null(pc.not_equal(after, before), pa.scalar(False))
    if column.null_count:
        differs = pc.or_(differs, pc.not_equal(pc.is_null(after), pc.is_null(before)))
    return differs.combine_chunks() if isinstance(differs, pa.ChunkedArray) else differs


Laid = tuple[str, TableRuns, list[Series], list[Hashable]]
"""One table for a request: (name, its runs, each run's series, each run's part key)."""


@dataclass
class _Part:
    """One part of a request (a tray's GPUs and links, a server's histograms) and what was built for it.

    Attributes:
        cells_for: (series, run lengths) that the cell columns were built for.
        templates / lengths: each series' label template and row count.
        column / row / series_of: per cell in request order, its value column, its row counted from
            the part's first row, and its series (the table's cell is column * rows + first + row).
        built_for: (series, which series have samples) that `request` was built for.
        request: the part's WriteRequest: the series with samples, in order.
        counts / samples: per series in `request`, its sample count and its Sample objects.
        slots: every Sample object in request order.
    """

    cells_for: tuple[list[Series], list[int]]
    templates: list[bytes]
    lengths: list[int]
    column: pa.Array
    row: pa.Array
    series_of: pa.Array
    built_for: tuple[list[Series], list[bool]] | None = None
    request: Any = None
    counts: list[int] = field(default_factory=list)
    samples: list[list[Any]] = field(default_factory=list)
    slots: list[Any] = field(default_factory=list)


def _cells(series: list[Series], run_lengths: list[int]) -> _Part:
    """A part's series' templates and lengths, and its cells relative to its first row."""
    templates: list[bytes] = []
    lengths: list[int] = []
    columns: list[int] = []
    rows: list[int] = []
    series_of: list[int] = []
    first = 0
    for entity, length in zip(series, run_lengths, strict=True):
        for template, column in entity:
            series_of.extend([len(templates)] * length)
            templates.append(template)
            lengths.append(length)
            columns.extend([column] * length)
            rows.extend(range(first, first + length))
        first += length
    return _Part(
        (series, run_lengths),
        templates,
        lengths,
        pa.array(columns, pa.int64()),
        pa.array(rows, pa.int64()),
        pa.array(series_of, pa.int64()),
    )


def _groups(keys: list[Hashable]) -> list[tuple[Hashable, int, int]]:
    """(key, lo, hi) of each run of equal part keys."""
    groups: list[tuple[Hashable, int, int]] = []
    lo = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[lo]:
            groups.append((keys[lo], lo, i))
            lo = i
    return groups


class RequestBuilder:
    """Makes remote-write request bodies part by part, reusing each part's request while it fits.

    A request is made of parts (each table's runs grouped by a part key: a tray, a server), each a
    WriteRequest of its own kept between calls with its Sample objects. A part whose series, sample
    counts and null cells are the same as last time only has its samples' two fields set again; one
    that changed (a tray that missed ticks, a server gone stale) is rebuilt alone. The body is the
    parts' serializations (by protobuf) one after another, which is the serialization of the one
    WriteRequest holding all their series: concatenated messages parse as one whose repeated fields
    are appended in order (protobuf's documented merge rule, as for the label templates).
    """

    def __init__(self) -> None:
        """No part is held until the first `build`."""
        self._parts: dict[tuple[str, Hashable], _Part] = {}
        self.samples = 0
        """Samples in the last body built."""
        self.rebuilt = 0
        """Parts rebuilt (new shape) by the last `build`: the costly path, for tests and benchmarks."""

    def build(self, tables: list[Laid]) -> bytes:
        """The serialized WriteRequest with every sample of `tables`, in order."""
        bodies: list[bytes] = []
        parts: dict[tuple[str, Hashable], _Part] = {}
        self.samples = self.rebuilt = 0
        for name, runs, series, part_keys in tables:
            for key, lo, hi in _groups(part_keys):
                name_key = (name, key) if (name, key) not in parts else (name, key, lo)
                part = self._parts.get(name_key)
                mine = series[lo:hi]
                run_lengths = [b - a for a, b in zip(runs.starts[lo:hi], runs.ends[lo:hi], strict=True)]
                if part is None or part.cells_for != (mine, run_lengths):
                    fresh = _cells(mine, run_lengths)
                    if part is not None:  # the same Sample objects may serve the new cells
                        fresh.built_for, fresh.request = part.built_for, part.request
                        fresh.counts, fresh.samples, fresh.slots = part.counts, part.samples, part.slots
                    part = fresh
                parts[name_key] = part
                bodies.append(self._fill(part, runs, runs.starts[lo], mine))
        self._parts = parts
        return b"".join(bodies)

    def _fill(self, part: _Part, runs: TableRuns, first: int, series: list[Series]) -> bytes:
        # Arrow scalars, not Python ints: pyarrow tries `import numpy` to convert a Python scalar
        # (and numpy is not a dependency: a failed import is looked up again each time).
        rows, start = pa.scalar(runs.rows, pa.int64()), pa.scalar(first, pa.int64())
        index = pc.add(pc.multiply(part.column, rows), pc.add(part.row, start))
        cells = runs.values.take(index)
        times = runs.stamps.take(index)
        counts = list(part.lengths)
        if cells.null_count:  # a null cell is no sample
            missing = pc.value_counts(part.series_of.filter(cells.is_null()))
            for one, n in zip(
                missing.field("values").to_pylist(), missing.field("counts").to_pylist(), strict=True
            ):
                counts[one] -= n
            valid = cells.is_valid()
            cells, times = cells.filter(valid), times.filter(valid)
        present = [n > 0 for n in counts]
        kept = [n for n in counts if n]
        if part.built_for is None or part.built_for[0] != series or part.built_for[1] != present:
            _rebuild(part, present, kept)
            part.built_for = (series, present)
            self.rebuilt += 1
        elif part.counts != kept:
            _recount(part, kept)
        values, stamps = cells.to_pylist(), times.to_pylist()
        for slot, value, stamp in zip(part.slots, values, stamps, strict=True):
            slot.value = value
            slot.timestamp = stamp
        self.samples += len(values)
        return part.request.SerializeToString()


def _rebuild(part: _Part, present: list[bool], counts: list[int]) -> None:
    """A new request for the part: its series with samples, their labels in one parse of their
    templates, then `counts` Sample objects each."""
    part.request = WriteRequest.FromString(
        b"".join(t for t, p in zip(part.templates, present, strict=True) if p)
    )
    part.samples = []
    for one, n in zip(part.request.timeseries, counts, strict=True):
        add = one.samples.add
        part.samples.append([add() for _ in range(n)])
    part.counts = counts
    part.slots = [sample for samples in part.samples for sample in samples]


def _recount(part: _Part, counts: list[int]) -> None:
    """The same series with other sample counts (a tick an endpoint missed): each series that changed
    gets Samples added or removed at its end; every Sample's fields are set afresh anyway."""
    for i, (have, n) in enumerate(zip(part.counts, counts, strict=True)):
        if n == have:
            continue
        held = part.samples[i]
        container = part.request.timeseries[i].samples
        if n < have:
            del container[n:]
            del held[n:]
        else:
            held.extend([container.add() for _ in range(n - have)])
    part.counts = counts
    part.slots = [sample for samples in part.samples for sample in samples]
