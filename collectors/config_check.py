"""Rack config validation: ConfigError, and the checker whose messages name the file, the line and the field.

tomllib reports no positions for valid TOML, so the line of a key or table is found in the text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")


class ConfigError(ValueError):
    """A rack config that cannot be used; str() is one line: `file:line: field: what is wrong`."""


class _Locator:
    """Finds the line of a table or key in TOML text (1-based; 0 when it cannot be found)."""

    def __init__(self, text: str) -> None:
        """Index the text's table headers."""
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str, bool]] = []  # (line index, table name, is array table)
        for i, line in enumerate(self.lines):
            match = _HEADER_RE.match(line)
            if match:
                self.headers.append((i, match.group(2).strip().strip("\"'"), match.group(1) == "[["))

    def _section(self, table: str | None, index: int | None) -> tuple[int, int] | None:
        """[start, end) line indices of a table's body (top level: before the first header)."""
        if table is None:
            return 0, self.headers[0][0] if self.headers else len(self.lines)
        seen = -1
        for n, (i, name, _array) in enumerate(self.headers):
            if name != table:
                continue
            seen += 1
            if index is None or seen == index:
                end = self.headers[n + 1][0] if n + 1 < len(self.headers) else len(self.lines)
                return i, end
        return None

    def line(self, table: str | None, index: int | None = None, key: str | None = None) -> int:
        """The line of `key` in the index-th `[[table]]` (or `[table]`), else of the table, else 0."""
        section = self._section(table, index)
        if section is None:
            # An inline form (`tray = [{...}]`): the best line is the top-level key's.
            return self.line(None, None, table) if table is not None else 0
        start, end = section
        if key is not None:
            pattern = re.compile(rf"^\s*(\"|')?{re.escape(key)}\1?\s*=")
            for i in range(start, end):
                if pattern.match(self.lines[i]):
                    return i + 1
        return start + 1 if table is not None else 0


class Checker:
    """Validation with messages that name the file, the line and the field."""

    def __init__(self, text: str, path: Path | str) -> None:
        """Check the config `text` read from `path` (named in every message)."""
        self.where = str(path)
        self.locate = _Locator(text)

    def fail(
        self, field: str, problem: str, table: str | None, index: int | None, key: str | None
    ) -> NoReturn:
        """Raise a ConfigError '`file:line: field: problem`' at `key` of the index-th `table`."""
        line = self.locate.line(table, index, key)
        place = f"{self.where}:{line}" if line else self.where
        raise ConfigError(f"{place}: {field}: {problem}")

    def fields(self, entry: Mapping[str, Any], allowed: Sequence[str], table: str, index: int | None) -> None:
        """Fail on the first key of `entry` that is not in `allowed`."""
        label = table if index is None else f"{table}[{index + 1}]"
        for key in entry:
            if key not in allowed:
                self.fail(
                    f"{label}.{key}",
                    f"unknown field (expected one of: {', '.join(allowed)})",
                    table,
                    index,
                    key,
                )

    def string(
        self, entry: Mapping[str, Any], key: str, label: str, table: str, index: int | None
    ) -> str | None:
        """`entry[key]` stripped, None when absent; fail unless it is a non-empty string."""
        value = entry.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{label}.{key}", f"must be a non-empty string, not {value!r}", table, index, key)
        return str(value).strip()

    def url(self, entry: Mapping[str, Any], label: str, table: str, index: int) -> str:
        """The entry's endpoint URL (/metrics added to a bare host:port); fail if missing or unusable."""
        text = self.string(entry, "url", label, table, index)
        if text is None:
            self.fail(f"{label}.url", "is missing (the endpoint's /metrics URL)", table, index, None)
        problem = url_problem(text)
        if problem:
            self.fail(f"{label}.url", f"{text!r} {problem}", table, index, "url")
        parts = urlsplit(text)
        return text if parts.path else text.rstrip("/") + "/metrics"


def url_problem(text: str) -> str | None:
    """Why `text` is not a usable http(s) URL of an endpoint, or None when it is."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        return f"is not a valid URL ({err})"
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    if port is not None and not 0 < port < 65536:
        return "has a port outside 1..65535"
    return None
