"""DuckDB connections that can reach only named directories, and the one statement kind a user may run.

Every connection that reads a store (StoreReader: `monitor query`, report, export, replay, the TUI's
history) and the one that writes an export bundle's text copies is made by locked_connection: DuckDB's
external access is off except for the directories named, extensions are neither installed nor loaded,
Python variables are not scanned, and the configuration is locked before any other SQL runs, so no
statement can SET its way back out. What a user types is also held to one read-only statement
(read_only_statement), decided by DuckDB's own parser, because the allowed directories are writable to
DuckDB too: `COPY (SELECT 'x') TO 'STORE/MANIFEST.json'` would pass a directory check.

See docs/query.md for what `monitor query` allows; DuckDB's own guide to these settings is
https://duckdb.org/docs/stable/operations_manual/securing_duckdb/overview.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path

import duckdb

from storage.sql_text import string_literal

ALLOWED = "SELECT, WITH, VALUES, FROM, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN of one of those"
"""What `monitor query` runs (all of them parse as DuckDB SELECT statements, EXPLAIN aside)."""


class QueryRefused(ValueError):
    """SQL that `monitor query` will not run; the message is one line saying what it accepts."""


class LockedConnection:
    """A DuckDB connection that can open files only under `dirs`, with its configuration locked.

    Args:
        dirs: directories DuckDB may read (and, for a caller's own COPY, write) under.
        threads: DuckDB threads (default: DuckDB's choice).
        memory_limit: DuckDB's memory_limit, e.g. '256MB' (default: DuckDB's, 80 % of RAM); past it
            DuckDB spills sorts, joins and aggregates to the spill directory.

    DuckDB spills big sorts and joins to a temp directory it also allows; it gets a private one
    (mkdtemp: 0700, a fresh name) that close() removes, instead of `.tmp` in whatever directory the
    command was started from. A connection dropped without close() (a reader nobody closed, an
    exception unwinding past it) removes it when collected or at interpreter exit: a test run used to
    leave dozens behind in /tmp.
    """

    def __init__(
        self, dirs: Sequence[Path], threads: int | None = None, memory_limit: str | None = None
    ) -> None:
        """Connect, set the session up, and lock it."""
        self._spill = Path(tempfile.mkdtemp(prefix="rack-monitor-duckdb-"))
        self._remove_spill = weakref.finalize(self, shutil.rmtree, self._spill, ignore_errors=True)
        config: dict[str, str | int] = {}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        self.con = duckdb.connect(config=config)
        allowed = ", ".join(string_literal(d.resolve()) for d in dirs)
        for setting in (
            "SET TimeZone = 'UTC'",
            # A progress bar past 2 s (seen on a loaded machine) would land in `--format json` output.
            "SET enable_progress_bar = false",
            "SET parquet_metadata_cache = true",
            "SET preserve_insertion_order = true",  # DuckDB's default; export's cut relies on it
            "SET python_enable_replacements = false",  # no `FROM some_python_variable`
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
            f"SET temp_directory = {string_literal(self._spill)}",
            f"SET allowed_directories = [{allowed}]",
            "SET enable_external_access = false",  # after allowed_directories: DuckDB refuses it after
            "SET lock_configuration = true",  # last: no SET, RESET or PRAGMA changes any of the above
        ):
            try:
                self.con.execute(setting)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Close the connection and remove the spill directory."""
        self.con.close()
        self._remove_spill()


def read_only_statement(sql: str) -> str:
    """`sql` itself when it is exactly one read-only statement; QueryRefused otherwise.

    DuckDB's parser decides (duckdb.extract_statements): DESCRIBE, SHOW, SUMMARIZE, VALUES, WITH and
    FROM-first queries are SELECT statements to it; EXPLAIN is accepted when what it explains is.

    Raises:
        QueryRefused: not one statement, or not a read-only kind.
        duckdb.ParserException: not SQL DuckDB can parse.
    """
    kind = _single_kind(sql)
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _explained(sql)
        if inner is None or _single_kind(inner) != duckdb.StatementType.SELECT:
            raise QueryRefused(f"monitor query explains only a read-only query ({ALLOWED})")
    elif kind != duckdb.StatementType.SELECT:
        raise QueryRefused(f"monitor query is read-only: {kind.name} refused; it runs one {ALLOWED}")
    return sql


def _single_kind(sql: str) -> duckdb.StatementType:
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        found = f"{len(statements)} statements" if statements else "no statement"
        raise QueryRefused(f"monitor query runs exactly one statement; this holds {found}")
    try:
        return statements[0].type
    except ValueError:  # a kind this duckdb module has no name for (UPDATE EXTENSIONS in 2.0.1)
        raise QueryRefused(f"monitor query is read-only: it runs {ALLOWED}") from None


def _explained(sql: str) -> str | None:
    """The statement after EXPLAIN [ANALYZE] [(options)], found with DuckDB's tokenizer; None if odd."""
    tokens = [(at, kind) for at, kind in duckdb.tokenize(sql) if kind != duckdb.token_type.comment]
    i = 0
    if i < len(tokens) and _word(sql, tokens, i) == "EXPLAIN":
        i += 1
    if i < len(tokens) and _word(sql, tokens, i) in ("ANALYZE", "ANALYSE"):
        i += 1
    if i < len(tokens) and _word(sql, tokens, i) == "(":
        depth = 0
        while i < len(tokens):
            word = _word(sql, tokens, i)
            depth += (word == "(") - (word == ")")
            i += 1
            if depth == 0:
                break
    return sql[tokens[i][0] :] if 0 < i < len(tokens) else None


def _word(sql: str, tokens: list[tuple[int, duckdb.token_type]], i: int) -> str:
    end = tokens[i + 1][0] if i + 1 < len(tokens) else len(sql)
    return sql[tokens[i][0] : end].strip().upper()
