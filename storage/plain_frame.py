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

from storage.columns import TABLES, Columns, checked_columns

if TYPE_CHECKING:
    from storage.frame import Frame


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
