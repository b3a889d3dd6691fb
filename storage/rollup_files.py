"""Rollup files' columns decoded once and kept in a bounded LRU, for the reader's counter increases.

A whole-hour question reads a few dozen rows of one small rollup file; through DuckDB that costs
milliseconds of planning and footer parsing per statement, more than the answer itself. A reader that
is asked again (the TUI, `monitor report` over several tables, a service answering queries) keeps the
decoded columns here: the same thing VictoriaMetrics' rollup result cache exploits, stated as such in
docs/benchmarks.md.

Files are immutable once listed in the manifest (storage.layout writes a new name for new contents),
but an entry is keyed by the file's path and its inode, mtime and size all the same, so a file
replaced under the same name is read again, never answered from the old entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

DEFAULT_MAX_BYTES = 16 << 20
"""The cache's bound: an hour of NVLink 1 min rollups (symbol errors) is about 4 MiB decoded."""


def _version(path: Path) -> tuple[str, int, int, int]:
    """A file's identity as its contents go: path, inode, mtime and size."""
    st = path.stat()
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size)


class RollupFiles:
    """Columns of Parquet files by path, decoded once per file version, and values made from them (a
    rollup span's pieces); least recently used dropped first.

    Args:
        max_bytes: the most decoded bytes kept (0 keeps nothing: every read decodes the file).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """An empty cache."""
        self.max_bytes = max_bytes
        self._values: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self.reads = 0
        """Files decoded so far (a test's window into hits and misses)."""

    def columns(
        self, path: Path, names: Sequence[str], groups: Sequence[int] | None = None
    ) -> pa.Table | None:
        """The file's columns `names` (all its rows, or those of row groups `groups`); None when the
        file lacks one of them."""

        def read() -> pa.Table | None:
            import pyarrow.parquet as pq  # here, not at import: a reader that never rates needn't hold it

            self.reads += 1
            file = pq.ParquetFile(path)
            if not set(names) <= set(file.schema_arrow.names):
                return None
            if groups is None:
                return file.read(columns=list(names))
            return file.read_row_groups(list(groups), columns=list(names))

        tag = ("columns", *names) if groups is None else ("columns", *names, "groups", *groups)
        got = self.derived([path], tag, read, lambda t: t.nbytes if t is not None else 0)
        return got  # type: ignore[no-any-return]

    def groups_within(self, path: Path, since_ms: int, until_ms: int) -> tuple[int, ...] | None:
        """The row groups of the file whose ts span meets [since_ms, until_ms] by its footer's statistics;
        None for all of them (every group meets it, or one has no ts statistics).

        A rollup day file holds a band of 10 h per row group (storage.bands): an hour inside it decodes
        the groups of its band, not the day.
        """
        import pyarrow.parquet as pq

        from storage.row_order import row_group_ts_spans  # with pyarrow.parquet, as read() has it

        def spans_of() -> list[tuple[int, int] | None]:
            return row_group_ts_spans(pq.ParquetFile(path).metadata)

        spans = self.derived([path], ("ts spans",), spans_of, lambda s: 64 * len(s))
        if any(span is None for span in spans):
            return None
        within = tuple(i for i, (lo, hi) in enumerate(spans) if lo <= until_ms and hi >= since_ms)
        return None if len(within) == len(spans) else within

    def derived(
        self,
        paths: Sequence[Path],
        tag: tuple[Any, ...],
        make: Callable[[], Any],
        size: Callable[[Any], int],
    ) -> Any:
        """What `make` computes from the files `paths` (as they are now), kept under (their versions, tag).

        Args:
            paths: the files the value is made from; a new version of any of them is a new key.
            tag: what is made from them (the columns read, a span's pieces).
            make: computes the value on a miss.
            size: the value's bytes, counted against max_bytes.
        """
        key = (tuple(_version(p) for p in paths), tag)
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key][0]
        value = make()
        nbytes = size(value)
        if nbytes <= self.max_bytes:
            self._values[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, old_bytes) = self._values.popitem(last=False)
                self._bytes -= old_bytes
        return value

    def rows(
        self, paths: Sequence[Path], names: Sequence[str], since_ms: int, until_ms: int
    ) -> pa.Table | None:
        """The rows of all `paths` with since_ms <= ts <= until_ms, columns `names` (ts among them).

        None when some file lacks a column (files written before the column existed).
        """
        import pyarrow.compute as pc

        parts = []
        for path in paths:
            table = self.columns(path, names, self.groups_within(path, since_ms, until_ms))
            if table is None:
                return None
            ms = table.column("ts").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
            # Typed scalars: an untyped Python int makes pyarrow try `import dateutil` on every call.
            lo, hi = pa.scalar(since_ms, pa.int64()), pa.scalar(until_ms, pa.int64())
            inside = pc.and_(pc.greater_equal(ms, lo), pc.less_equal(ms, hi))
            parts.append(table.filter(inside))
        return pa.concat_tables(parts) if parts else None

    def clear(self) -> None:
        """Drop every entry."""
        self._values.clear()
        self._bytes = 0
