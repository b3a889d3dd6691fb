"""Store rows to one WriteRequest in bulk: Arrow and numpy lay the samples out, protobuf encodes them.

A request holds one TimeSeries per (entity, column) with that entity's samples oldest first. The
costs that grow with the samples are kept out of Python loops where a library can do them:

- runs of rows of one entity are found by Arrow comparisons of the key columns (rows come sorted by
  entity, then time: series.ORDER_BY; collectors.remote_write.runs), and kept while a table's key
  columns are equal to last time's;
- each sample's value and timestamp are gathered into two flat lists, series by series, by one Arrow
  `take` per table (its value columns laid end to end, indexed by column * rows + row); a null cell is
  no sample, and the null cells are counted per series again only when they moved;
- the request is kept between calls in parts (RequestBuilder: a tray's GPUs and links, a server's
  histograms): while a part's shape (its series and how many samples each has) is the same as last
  time, as it is for a collector sending every `interval` seconds, only its samples' two fields are set
  again; the `protobuf` package (upb) then serializes it. A new shape is built by one parse of the
  series' cached label templates (serialized one-series WriteRequests made by protobuf; concatenated
  messages parse as one whose repeated fields are appended in order, protobuf's documented merge rule)
  and one `add()` per sample. The parse is into wire.SamplesRequest, so the labels stay the templates'
  bytes and are written back verbatim rather than serialized label by label each request.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collectors.remote_write.runs import TableRuns
from collectors.remote_write.wire import SamplesRequest

Series = list[tuple[bytes, int]]
"""An entity's series: (label template, value column) pairs; the same list object while unchanged."""


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
        index_for / index: (table rows, the part's first row) and the cells' places in the table's
            values for them.
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
    index_for: tuple[int, int] | None = None
    index: pa.Array | None = None
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
        self._layouts: dict[
            str, tuple[tuple[object, ...], list[tuple[Hashable, int, list[Series], list[int]]]]
        ] = {}
        """Per table: what its layout was made of and the layout (see _layout)."""
        self._tables: dict[str, _TableFill] = {}

    def build(self, tables: list[Laid]) -> bytes:
        """The serialized WriteRequest with every sample of `tables`, in order."""
        bodies: list[bytes] = []
        parts: dict[tuple[str, Hashable], _Part] = {}
        self.samples = self.rebuilt = 0
        placed: list[tuple[_Part, int, list[Series]]] = []
        for name, runs, series, part_keys in tables:
            for key, lo, mine, run_lengths in self._layout(name, runs, series, part_keys):
                name_key = (name, key) if (name, key) not in parts else (name, key, lo)
                part = self._parts.get(name_key)
                if part is None or part.cells_for != (mine, run_lengths):
                    fresh = _cells(mine, run_lengths)
                    if part is not None:  # the same Sample objects may serve the new cells
                        fresh.built_for, fresh.request = part.built_for, part.request
                        fresh.counts, fresh.samples, fresh.slots = part.counts, part.samples, part.slots
                    part = fresh
                parts[name_key] = part
                placed.append((part, runs.starts[lo], mine))
            bodies += self._fill_table(name, runs, placed)
            placed = []
        self._parts = parts
        return b"".join(bodies)

    def _layout(
        self, name: str, runs: TableRuns, series: list[Series], part_keys: list[Hashable]
    ) -> list[tuple[Hashable, int, list[Series], list[int]]]:
        """A table's parts: (part key, first run, the runs' series, the runs' lengths) of each.

        The same list objects as last time while the table's runs, series and part keys are the very
        objects they were (series.RunsMemo, SeriesEncoder._memo): `cells_for` then compares by identity.
        """
        made_of = (runs.starts, series, part_keys)
        held = self._layouts.get(name)
        if held is not None and all(a is b for a, b in zip(held[0], made_of, strict=True)):
            return held[1]
        layout = [
            (
                key,
                lo,
                series[lo:hi],
                [b - a for a, b in zip(runs.starts[lo:hi], runs.ends[lo:hi], strict=True)],
            )
            for key, lo, hi in _groups(part_keys)
        ]
        self._layouts[name] = (made_of, layout)
        return layout

    def _fill_table(
        self, name: str, runs: TableRuns, placed: list[tuple[_Part, int, list[Series]]]
    ) -> list[bytes]:
        """Set the samples of a table's parts (part, its first row, its series) and serialize each.

        The table's cells are gathered by one `take` over all its parts' places, and the null cells
        (no sample) are counted per series only when the table's nulls moved since last time.
        """
        indexes = [self._index(part, runs.rows, first) for part, first, _ in placed]
        held = self._tables.get(name)
        if (
            held is None
            or len(held.indexes) != len(indexes)
            or any(a is not b for a, b in zip(held.indexes, indexes, strict=True))
        ):
            joined = pa.concat_arrays(indexes) if indexes else pa.array([], pa.int64())
            held = self._tables[name] = _TableFill(indexes, joined)
        cells, times = runs.values.take(held.index), runs.stamps.take(held.index)
        valid = cells.is_valid() if cells.null_count else None
        if held.counts is None or not _same_mask(held.valid, valid):
            held.valid, held.counts = valid, _counts(placed, valid)
        if valid is not None:
            cells, times = cells.filter(valid), times.filter(valid)
        values, stamps = cells.to_pylist(), times.to_pylist()
        bodies = []
        offset = 0
        for (part, _, series), counts in zip(placed, held.counts, strict=True):
            n = sum(counts)
            bodies.append(
                self._fill(part, series, counts, values[offset : offset + n], stamps[offset : offset + n])
            )
            offset += n
        return bodies

    @staticmethod
    def _index(part: _Part, rows: int, first: int) -> pa.Array:
        """The part's cells' places in the table's values (column * rows + first + row), kept while the
        table's row count and the part's first row are the same."""
        if part.index is None or part.index_for != (rows, first):
            # Arrow scalars, not Python ints: pyarrow tries `import numpy` to convert a Python scalar
            # (and numpy is not a dependency: a failed import is looked up again each time).
            at_rows, start = pa.scalar(rows, pa.int64()), pa.scalar(first, pa.int64())
            part.index = pc.add(pc.multiply(part.column, at_rows), pc.add(part.row, start))
            part.index_for = (rows, first)
        return part.index

    def _fill(
        self, part: _Part, series: list[Series], counts: list[int], values: list[Any], stamps: list[Any]
    ) -> bytes:
        """Set a part's samples (`counts`: each series' samples, 0 for one without) and serialize it."""
        present = [n > 0 for n in counts]
        kept = [n for n in counts if n]
        if part.built_for is None or part.built_for[0] != series or part.built_for[1] != present:
            _rebuild(part, present, kept)
            part.built_for = (series, present)
            self.rebuilt += 1
        elif part.counts != kept:
            _recount(part, kept)
        for slot, value, stamp in zip(part.slots, values, stamps, strict=True):
            slot.value = value
            slot.timestamp = stamp
        self.samples += len(values)
        return part.request.SerializeToString()


@dataclass
class _TableFill:
    """One table's parts' places joined (for one `take`), and its null cells' count per series.

    Attributes:
        indexes: the parts' index arrays it was joined from (the very objects).
        index: them end to end.
        valid: the validity of the cells the counts are for (None: no null cell).
        counts: per part, each series' sample count (its cells less its null ones).
    """

    indexes: list[pa.Array]
    index: pa.Array
    valid: pa.Array | None = None
    counts: list[list[int]] | None = None


def _same_mask(held: pa.Array | None, valid: pa.Array | None) -> bool:
    if held is None or valid is None:
        return held is None and valid is None
    return held.equals(valid)


def _counts(placed: list[tuple[_Part, int, list[Series]]], valid: pa.Array | None) -> list[list[int]]:
    """Each part's series' sample counts: their cells less their null cells (`valid`: None if none)."""
    counts = []
    offset = 0
    for part, _, _ in placed:
        mine = list(part.lengths)
        cells = len(part.series_of)
        if valid is not None:
            null = pc.invert(valid.slice(offset, cells))
            missing = pc.value_counts(part.series_of.filter(null))
            for one, n in zip(
                missing.field("values").to_pylist(), missing.field("counts").to_pylist(), strict=True
            ):
                mine[one] -= n
        counts.append(mine)
        offset += cells
    return counts


def _rebuild(part: _Part, present: list[bool], counts: list[int]) -> None:
    """A new request for the part: its series with samples, their labels in one parse of their
    templates, then `counts` Sample objects each."""
    part.request = SamplesRequest.FromString(  # labels kept as their templates' bytes (wire.py)
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
