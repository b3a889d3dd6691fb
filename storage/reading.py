"""What the reader's helpers need of a StoreReader, as a Protocol: they import this, not the reader.

storage/reader.py calls storage/window_pieces.py and storage/rollup_read.py, which call back into the
reader (its relations, connection, manifest and rollup cache). Typing them against the reader itself
made an import circle; against this, imports go one way (reader -> helpers -> this).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from storage.counter_rates import Relation
    from storage.layout import Manifest
    from storage.rollup_files import RollupFiles


class Reading(Protocol):
    """The parts of storage.reader.StoreReader that its window and rollup helpers use."""

    root: Path
    rollup_files: RollupFiles

    @property
    def manifest(self) -> Manifest:
        """The manifest the reader reads by."""
        ...

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The reader's DuckDB connection."""
        ...

    def refresh(self, force: bool = False) -> bool:
        """Pick up a newer manifest; whether it changed."""
        ...

    def relation(self, table: str, since_ms: int | None = None, until_ms: int | None = None) -> str:
        """A parenthesised SQL relation over one table's rows in the window."""
        ...

    def empty(self, name: str) -> str:
        """The name of an empty relation in table `name`'s schema."""
        ...

    def series_relation(self, series: str) -> Relation:
        """relation(), narrowed to the rows of some series."""
        ...

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pa.Table:
        """A query's rows as Arrow."""
        ...
