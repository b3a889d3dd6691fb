"""A table's rows as runs of one entity each (rows sorted by entity, then time: series.ORDER_BY), found
by Arrow comparisons of the key columns, and its value columns laid end to end for one Arrow `take`
(collectors.remote_write.request). RunsMemo keeps a table's runs while its key columns are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from storage.schemas import TS


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


@dataclass
class _Split:
    """Where a table's runs are, for the key columns they were found in (RunsMemo)."""

    key_table: pa.Table
    starts: list[int]
    ends: list[int]
    keys: list[tuple[Any, ...]]


class RunsMemo:
    """A table's runs, for a sender that lays out the same tables each request: a table whose key
    columns are equal to last time's (one Arrow comparison) gets last time's runs, the very list
    objects, so that what is built from them (series, parts) is recognised by identity further on."""

    def __init__(self) -> None:
        """Nothing held until the first `runs`."""
        self._held: dict[str, _Split] = {}

    def runs(
        self, name: str, table: pa.Table, key_columns: Sequence[str], value_columns: Sequence[pa.ChunkedArray]
    ) -> TableRuns:
        """Split `table` (sorted by its key columns, then ts) into runs, reusing table `name`'s runs
        when its key columns are unchanged; lay its value columns end to end."""
        key_table = table.select(list(key_columns))
        held = self._held.get(name)
        if held is None or not held.key_table.equals(key_table):
            held = self._held[name] = _split(key_table)
        return _laid(table, held, value_columns)


def _split(key_table: pa.Table) -> _Split:
    """The runs of equal keys in a table of key columns only (sorted by them)."""
    rows = key_table.num_rows
    starts = [0] if rows else []
    if rows > 1:
        changed = functools.reduce(pc.or_, [_changes(column) for column in key_table.columns])
        starts += [i + 1 for i in pc.indices_nonzero(changed).to_pylist()]
    ends = [*starts[1:], rows] if rows else []
    at = pa.array(starts, pa.int64())
    keys = list(zip(*(column.take(at).to_pylist() for column in key_table.columns), strict=True))
    return _Split(key_table, starts, ends, keys)


def _laid(table: pa.Table, split: _Split, value_columns: Sequence[pa.ChunkedArray]) -> TableRuns:
    """The table's runs (`split`) and its value columns end to end."""
    rows = table.num_rows
    starts, ends, keys = split.starts, split.ends, split.keys
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
