"""PlainFrame: one tick's tables as Python column lists, the Frame before it becomes Arrow.

The NVML collector builds a tick as column lists anyway; the agent renders its page and its tray
stream straight from them (collectors.mappings.agent_page, tray_stream), so an agent never loads
pyarrow (27 MiB resident: docs/benchmarks.md, issue 18's agent). Everything else takes `to_frame()`.
No pyarrow here, nor in anything this module imports at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storage.columns import INT_BOUNDS, TABLES

if TYPE_CHECKING:
    from storage.frame import Frame

Columns = dict[str, list[Any]]
"""A table's columns by name, each a list with one value per row."""


@dataclass(frozen=True)
class PlainFrame:
    """One tick of one source, as column lists in the store's columns (storage.columns.TABLES).

    Attributes:
        ts_ms: the tick's time, epoch milliseconds (UTC); the `ts` column of every table holds it.
        tables: columns by table name; every column of the table is there. A table the source did
            not produce is absent.
    """

    ts_ms: int
    tables: Mapping[str, Columns] = field(default_factory=dict)

    @classmethod
    def of(cls, ts_ms: int, tables: Mapping[str, Mapping[str, list[Any]]]) -> PlainFrame:
        """A frame of `tables` given as columns by name, through checked_columns (absent columns are
        null, integers outside their column's type are null)."""
        return cls(ts_ms, {name: checked_columns(name, columns) for name, columns in tables.items()})

    @classmethod
    def from_frame(cls, frame: Frame) -> PlainFrame:
        """The Python lists of an Arrow frame's batches (its `ts` column as epoch milliseconds)."""
        tables = {}
        for name, batch in frame.batches.items():
            columns = batch.to_pydict()
            columns["ts"] = [frame.ts_ms] * batch.num_rows
            tables[name] = columns
        return cls(frame.ts_ms, tables)

    def table(self, name: str) -> Columns:
        """The columns of one table; empty columns (no rows) when this frame has none."""
        columns = self.tables.get(name)
        return columns if columns is not None else {c.name: [] for c in TABLES[name]}

    def rows(self, name: str) -> int:
        """Rows of one table."""
        columns = self.tables.get(name)
        return len(columns["ts"]) if columns else 0

    def to_frame(self) -> Frame:
        """The Arrow Frame of these columns (loads pyarrow)."""
        from storage.frame import Frame, batch_from_columns

        return Frame(self.ts_ms, {name: batch_from_columns(name, cols) for name, cols in self.tables.items()})


def as_plain(frame: PlainFrame | Frame) -> PlainFrame:
    """`frame` as a PlainFrame (an Arrow Frame's batches as lists; a PlainFrame as it is)."""
    return frame if isinstance(frame, PlainFrame) else PlainFrame.from_frame(frame)


def checked_columns(table: str, columns: Mapping[str, list[Any]]) -> Columns:
    """Every column of `table`, from `columns` (an absent one null), with each integer that its
    column's type cannot hold made null.

    Drivers answer "not available" with sentinels such as 0xFFFFFFFF, and u64 counters can exceed
    int64; one such value must cost a cell, not the tick.

    Raises:
        KeyError: a column `table` does not have.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    known = {c.name for c in TABLES[table]}
    extra = set(columns) - known
    if extra:
        raise KeyError(f"{table} has no column {sorted(extra)[0]!r}")
    out: Columns = {}
    for column in TABLES[table]:
        values = columns.get(column.name)
        if values is None:
            out[column.name] = [None] * n
            continue
        bounds = INT_BOUNDS.get(column.type)
        out[column.name] = values if bounds is None or _fits(values, *bounds) else _nulled(values, *bounds)
    return out


def _fits(values: list[Any], lo: int, hi: int) -> bool:
    present = [v for v in values if v is not None]
    if not present:
        return True
    return all(isinstance(v, int) for v in present) and lo <= min(present) and max(present) <= hi


def _nulled(values: list[Any], lo: int, hi: int) -> list[Any]:
    return [v if v is None or (isinstance(v, int) and lo <= v <= hi) else None for v in values]
