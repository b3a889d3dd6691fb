"""SQL text built from values: string literals, identifiers and timestamps, quoted one way everywhere.

No DuckDB import: readers that answer from the rollup cache never load it (storage.reader).
"""

from __future__ import annotations

from pathlib import Path


def string_literal(text: str | Path) -> str:
    """`text` (a path too) as a SQL string literal: 'it''s'."""
    return "'" + str(text).replace("'", "''") + "'"


def identifier(name: str) -> str:
    """`name` as a quoted SQL identifier (a column, view or table name): a"b becomes "a""b"."""
    return '"' + name.replace('"', '""') + '"'


def ts_literal(ms: int) -> str:
    """A TIMESTAMPTZ literal for epoch ms that DuckDB can push down into Parquet statistics."""
    return f"make_timestamptz({int(ms) * 1000}::BIGINT)"
