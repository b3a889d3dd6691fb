"""The Prometheus text format's vocabulary: families, samples, labels, and the line-level syntax checks.

collectors/promtext.py parses whole pages with these; they live apart so each module stays small.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

METRIC_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
"""The TYPE values of format 0.0.4."""

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|\Z)', re.S)
_LABEL_ESCAPE_RE = re.compile(r'\\[\\"n]')
_HELP_ESCAPE_RE = re.compile(r"\\[\\n]")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
CACHE_LIMIT = 200_000
"""Series heads kept per parser; a page set that churns past this just starts the cache afresh."""


def _unescape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group(0)]


class ExpositionError(ValueError):
    """A page that is not valid text exposition format; `line` is 1-based (0: the page as a whole)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.message = message


class Labels(dict[str, str]):
    """An immutable, hashable label set: a dict for lookups, shareable between samples and pages."""

    __slots__ = ("_hash",)

    def __hash__(self) -> int:  # type: ignore[override]
        try:
            return self._hash
        except AttributeError:
            self._hash: int = hash(frozenset(self.items()))
            return self._hash

    def _immutable(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("Labels are immutable (they are shared between samples)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _immutable  # type: ignore[assignment]

    def without(self, *names: str) -> Labels:
        """A copy without the given label names (e.g. `le` to key a histogram's series)."""
        return Labels((k, v) for k, v in self.items() if k not in names)


EMPTY_LABELS = Labels()


class Sample(NamedTuple):
    """One sample line: its name as written, labels, value, and timestamp in ms (None when absent)."""

    name: str
    labels: Labels
    value: float
    timestamp_ms: int | None


@dataclass(slots=True)
class Family:
    """A metric family: the name of its TYPE/HELP line (or of its sample), type, help, samples.

    `type` is one of METRIC_TYPES ("untyped" when no TYPE line was given); `help` is None when no
    HELP line was given. Counter names keep their `_total`, unlike prometheus_client's families.
    A series appears at most once in `samples`: the page's first sample of it (see `duplicates`).
    """

    name: str
    type: str = "untyped"
    help: str | None = None
    samples: list[Sample] = field(default_factory=list)
    duplicates: int = 0
    """Repeats of a series already on the page (same sample name and label set), dropped by the parser."""

    def values(self, name: str | None = None) -> Iterator[tuple[Labels, float]]:
        """(labels, value) of the samples named `name` (default: the family's name)."""
        wanted = self.name if name is None else name
        return ((s.labels, s.value) for s in self.samples if s.name == wanted)


new_sample = tuple.__new__
SKIP = Family("")
"""Marks a sample name whose family the caller's `want` filter excluded."""


_VALID_NAMES: set[str] = set()


def check_name(name: str, lineno: int) -> None:
    if name in _VALID_NAMES:
        return
    if not _NAME_RE.fullmatch(name):
        raise ExpositionError(lineno, f"invalid metric name {name!r}")
    if len(_VALID_NAMES) > 50_000:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(name)


class Declaration(NamedTuple):
    """What a `#` line says on its own, before the page's state is consulted (cached by line text).

    Attributes:
        filter_name: the text after `# HELP ` / `# TYPE ` up to a blank (what the `want` fast path
            looks up; None for other lines).
        keyword: "HELP" or "TYPE"; None for a plain comment.
        name: the declared family.
        payload: the unescaped help text, or the lower-cased type.
        error: what is wrong with the line itself ("" if nothing), raised when the line is applied.
    """

    filter_name: str | None
    keyword: str | None
    name: str = ""
    payload: str = ""
    error: str = ""


def declaration(line: str) -> Declaration:
    """Read a stripped `#` line (never raises: a bad line carries its error)."""
    filter_name = None
    if line.startswith(("# HELP ", "# TYPE ")):
        end = line.find(" ", 7)
        filter_name = line[7:] if end < 0 else line[7:end]
    parts = line[1:].split(None, 2)
    if not parts or parts[0] not in ("HELP", "TYPE"):
        return Declaration(filter_name, None)
    keyword = parts[0]
    if len(parts) < 2:
        return Declaration(filter_name, keyword, error=f"{keyword} line without a metric name")
    name = parts[1]
    if name not in _VALID_NAMES and not _NAME_RE.fullmatch(name):
        return Declaration(filter_name, keyword, name, error=f"invalid metric name {name!r}")
    rest = parts[2] if len(parts) == 3 else ""
    if keyword == "HELP":
        return Declaration(
            filter_name, keyword, name, _HELP_ESCAPE_RE.sub(_unescape, rest) if "\\" in rest else rest
        )
    kind = rest.lower()
    error = "" if kind in METRIC_TYPES else f"unknown metric type {rest!r} for {name}"
    return Declaration(filter_name, keyword, name, kind, error)


def parse_value(text: str, lineno: int, what: str) -> float:
    # Python's float() also takes "1_000"; Go's ParseFloat (the format's definition) does not.
    if "_" in text:
        raise ExpositionError(lineno, f"invalid {what} {text!r}")
    try:
        return float(text)
    except ValueError:
        raise ExpositionError(lineno, f"invalid {what} {text!r}") from None


def parse_timestamp(text: str, lineno: int) -> int:
    if "_" in text:
        raise ExpositionError(lineno, f"invalid timestamp {text!r} (want integer milliseconds)")
    try:
        return int(text)
    except ValueError:
        raise ExpositionError(lineno, f"invalid timestamp {text!r} (want integer milliseconds)") from None


def parse_labels(body: str, lineno: int = 0) -> Labels:
    """Parse the text between a sample's braces into Labels.

    Raises:
        ExpositionError: on a malformed label set or a repeated label name.
    """
    pairs: dict[str, str] = {}
    pos, end = 0, len(body)
    while pos < end:
        match = _LABEL_RE.match(body, pos)
        if match is None:
            if not body[pos:].strip(" \t"):
                break
            raise ExpositionError(lineno, f"malformed label set at {body[pos : pos + 40]!r}")
        name, value, sep = match.groups()
        if name in pairs:
            raise ExpositionError(lineno, f"label {name!r} given twice")
        if name == "__name__":
            raise ExpositionError(lineno, "label name __name__ is reserved")
        if "\\" in value:
            value = _LABEL_ESCAPE_RE.sub(_unescape, value)
        pairs[name] = value
        pos = match.end()
        if not sep:
            break
    return Labels(pairs)
