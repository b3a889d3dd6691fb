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

# The grammar of promlex.l (prometheus/prometheus model/textparse/promlex.l, v2.42.0), as regexes with
# possessive quantifiers, so they never backtrack into a shorter token than the lexer reads.
_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*+")
_PAIR = r'[ \t]*+([a-zA-Z_][a-zA-Z0-9_]*+)[ \t]*+=[ \t]*+"((?:[^"\\]|\\.)*+)"[ \t]*+(,?+)'
_LABEL_RE = re.compile(_PAIR, re.S)
_LABEL_SET_RE = re.compile(
    r'\{((?:[ \t]*+[a-zA-Z_][a-zA-Z0-9_]*+[ \t]*+=[ \t]*+"(?:[^"\\]|\\.)*+"[ \t]*+,?+)*+[ \t]*+)\}', re.S
)
"""`{labels}`: pairs separated by a comma or by nothing (promparse.go parseLVals accepts both), one
trailing comma, blanks anywhere between tokens."""
_BLANKS_RE = re.compile(r"[ \t]*+")
_WORD_RE = re.compile(r"[^ \t{]*+")
_META_RE = re.compile(r"#[ \t]++(HELP|TYPE)[ \t]++")
"""A HELP/TYPE line; `#HELP x`, `# HELPx` or a bare `# HELP` is a plain comment to the lexer."""
_FLOAT_RE = re.compile(
    r"[+-]?+(?:(?:[0-9]++\.?+[0-9]*+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+|inf(?:inity)?+)|nan", re.I
)
"""What Go's strconv.ParseFloat reads once promparse.go's parseFloat has refused p, P and _: no
hexadecimal (it needs a p exponent), ASCII digits only, a sign on inf but not on nan."""
SPECIAL_VALUES = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"})
"""The non-finite values ParseFloat reads (lower-cased); float() also reads -nan, +nan and 1e400."""
_SAMPLE_RE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*+)[ \t]*+"
    r'(\{((?:[ \t]*+[a-zA-Z_][a-zA-Z0-9_]*+[ \t]*+=[ \t]*+"(?:[^"\\]|\\.)*+"[ \t]*+,?+)*+[ \t]*+)\})?+[ \t]*+'
    r"((?:[+-]?+(?:(?:[0-9]++\.?+[0-9]*+|\.[0-9]++)(?:e[+-]?+[0-9]++)?+|inf(?:inity)?+)|nan))"
    r"(?:[ \t]++([0-9]++))?+[ \t]*+\Z",
    re.S | re.I,
)
"""A whole valid sample line in one match (name, label set, its body, value, timestamp); a line it
does not match goes through split_sample's token by token reading, which names the fault."""
_INT64_MAX = 2**63 - 1
_SURROGATE_RE = re.compile("[\udc80-\udcff]")
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


class Declaration(NamedTuple):
    """What a `#` line says on its own, before the page's state is consulted (cached by line text).

    Attributes:
        filter_name: the declared family's name (what the `want` fast path looks up), when one
            was read; None for a plain comment.
        keyword: "HELP" or "TYPE"; None for a plain comment.
        name: the declared family.
        payload: the unescaped help text, or the type.
        error: what is wrong with the line itself ("" if nothing), raised when the line is applied.
        ends_page: a plain comment holding a NUL byte: promlex.l's consumeComment returns EOF there,
            so Prometheus reads nothing after it, and neither do we.
    """

    filter_name: str | None
    keyword: str | None
    name: str = ""
    payload: str = ""
    error: str = ""
    ends_page: bool = False


def declaration(line: str) -> Declaration:
    """Read a `#` line (leading blanks and a trailing CR removed) as promlex.l does; never raises.

    After the name, the lexer reads the rest of the line as one token and promparse.go drops its
    first character (the blank after the name), so `# TYPE m  gauge` declares type " gauge" (an
    error) and `# HELP m  two` the help " two"; a rest of blanks only is empty help (`# HELP m `).
    """
    meta = _META_RE.match(line)
    if meta is None:
        return Declaration(None, None, ends_page="\x00" in line)
    keyword = meta.group(1)
    name_match = _NAME_RE.match(line, meta.end())
    if name_match is None:
        return Declaration(None, keyword, error=f"expected a metric name after {keyword}")
    name = name_match.group()
    rest = line[name_match.end() :]
    text = rest[1:] if rest.strip(" \t") else ""
    if keyword == "HELP":
        help_text = _HELP_ESCAPE_RE.sub(_unescape, text) if "\\" in text else text
        return Declaration(name, keyword, name, help_text)
    error = "" if text in METRIC_TYPES else f"unknown metric type {text!r} for {name}"
    return Declaration(name, keyword, name, text, error)


def parse_value(text: str, lineno: int, what: str = "value") -> float:
    """A sample value as promparse.go reads it (parseFloat: Go's ParseFloat without p, P and _)."""
    if _FLOAT_RE.fullmatch(text) is None:
        raise ExpositionError(lineno, f"invalid {what} {text!r}")
    value = float(text)
    if value - value != 0.0 and text.lower() not in SPECIAL_VALUES:
        # 1e400: ParseFloat answers ErrRange (float() reads +Inf); a signed nan is not Go syntax.
        raise ExpositionError(lineno, f"{what} {text!r} is out of range or not a Go float")
    return value


def parse_timestamp(text: str, lineno: int) -> int:
    """A timestamp as promlex.l reads it: ASCII digits only ({D}+, no sign), within int64 (ParseInt)."""
    if not (text.isascii() and text.isdigit()):
        raise ExpositionError(lineno, f"invalid timestamp {text!r} (want unsigned integer milliseconds)")
    value = int(text)
    if value > _INT64_MAX:
        raise ExpositionError(lineno, f"timestamp {text!r} is out of range (beyond int64)")
    return value


def sample_name(line: str) -> str:
    """The metric name a sample line starts with ("" if it does not start with one)."""
    match = _NAME_RE.match(line)
    return "" if match is None else match.group()


def split_sample(line: str, lineno: int) -> tuple[str, str, str | None, float, int | None]:
    """A sample line (leading blanks and a trailing CR removed) as promlex.l tokenises it.

    Returns:
        (metric name, head: the line up to the end of its name or label set, the text between
        the braces or None, value, timestamp in ms or None).
    """
    whole = _SAMPLE_RE.match(line)
    if whole is not None:
        name, label_set, body, value_text, timestamp_text = whole.groups()
        value = float(value_text)
        if value - value != 0.0 and value_text.lower() not in SPECIAL_VALUES:
            raise ExpositionError(lineno, f"value {value_text!r} is out of range or not a Go float")
        head = line[: whole.end(2)] if label_set is not None else name
        if timestamp_text is None:
            return name, head, body, value, None
        return name, head, body, value, parse_timestamp(timestamp_text, lineno)
    raise _fault(line, lineno)


def _read_tokens(line: str, lineno: int) -> tuple[str, str, str | None, float, int | None]:
    """split_sample token by token, for the line the one regex refused: raises naming the fault."""
    match = _NAME_RE.match(line)
    if match is None:
        if line.startswith(("{", '"')):
            raise ExpositionError(lineno, "quoted (UTF-8) metric names are not text format 0.0.4")
        word = _WORD_RE.match(line).group()  # type: ignore[union-attr]
        raise ExpositionError(lineno, f"invalid metric name {word!r}")
    name = match.group()
    end = match.end()
    brace = _BLANKS_RE.match(line, end).end()  # type: ignore[union-attr]
    body = None
    if line.startswith("{", brace):
        label_set = _LABEL_SET_RE.match(line, brace)
        if label_set is None:
            raise ExpositionError(lineno, _label_set_error(line[brace + 1 :], lineno))
        body = label_set.group(1)
        end = label_set.end()
    tokens = [token for token in line[end:].replace("\t", " ").split(" ") if token]
    if len(tokens) == 1:
        return name, line[:end], body, parse_value(tokens[0], lineno), None
    if len(tokens) == 2:
        return name, line[:end], body, parse_value(tokens[0], lineno), parse_timestamp(tokens[1], lineno)
    what = "a value" if not tokens else "a value and at most a timestamp"
    raise ExpositionError(lineno, f"sample {name} needs {what} after its labels")


def _fault(line: str, lineno: int) -> ExpositionError:
    """Why a line _SAMPLE_RE does not match is not a sample (read token by token to name the fault)."""
    try:
        _read_tokens(line, lineno)
    except ExpositionError as err:
        return err
    return ExpositionError(lineno, "not a sample line")


def _label_set_error(after_brace: str, lineno: int) -> str:
    """Why `{...` is not a label set: the first fault parse_labels meets, or an unclosed set."""
    close = after_brace.rfind("}")
    if close >= 0:
        try:
            parse_labels(after_brace[:close], lineno)
        except ExpositionError as err:
            return err.message
    return "label set is not closed with '}'"


def parse_labels(body: str, lineno: int = 0) -> Labels:
    """Parse the text between a sample's braces into Labels (pairs separated by a comma or blanks).

    Raises:
        ExpositionError: on a malformed label set or a repeated label name (Prometheus' TSDB
            refuses a series with a repeated label name, which fails the whole scrape).
    """
    pairs: dict[str, str] = {}
    pos, end = 0, len(body)
    while pos < end:
        match = _LABEL_RE.match(body, pos)
        if match is None:
            if not body[pos:].strip(" \t"):
                break
            raise ExpositionError(lineno, f"malformed label set at {body[pos : pos + 40]!r}")
        name, value, _ = match.groups()
        if name in pairs:
            raise ExpositionError(lineno, f"label {name!r} given twice")
        if name == "__name__":
            raise ExpositionError(lineno, "label name __name__ is reserved")
        if "\\" in value:
            value = _LABEL_ESCAPE_RE.sub(_unescape, value)
        pairs[name] = value
        pos = match.end()
    return Labels(pairs)


def decode_page(data: bytes) -> str:
    """A page's text; bytes that are not UTF-8 pass only inside plain comments, as in Prometheus.

    promparse.go checks UTF-8 in label values and help text; a plain comment's bytes are skipped
    unread, and every other token's grammar is ASCII. Undecodable bytes are kept as surrogates.

    Raises:
        ExpositionError: a line other than a plain comment is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
    for lineno, line in enumerate(text.split("\n"), 1):
        start = line.lstrip(" \t")
        comment = declaration(start.removesuffix("\r")) if start.startswith("#") else None
        if start.startswith("\x00") or (comment is not None and comment.ends_page):
            break  # the page ends here for Prometheus (promlex.l: a NUL is EOF)
        bad = _SURROGATE_RE.search(line)
        if bad is not None and (comment is None or comment.keyword is not None):
            raise ExpositionError(lineno, f"line is not UTF-8 (byte {bad.start()} of the line)")
    return text
