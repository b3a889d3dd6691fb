"""Parser for the Prometheus text exposition format 0.0.4, built for the per-tick scrape path.

The whole format is accepted: HELP/TYPE and plain comments, escaped label values (\\\\ \\" \\n),
NaN and +Inf/-Inf, exponent numbers, optional millisecond timestamps, trailing commas in label
sets, blank lines, CRLF, untyped metrics, histogram samples in any order (SGLang prints `_sum`
before the buckets) and `_created` families. Family grouping follows the Go parser
(expfmt.TextParser): a sample joins the family declared for its name wherever it appears, a
histogram owns `x_bucket`/`x_sum`/`x_count`, a summary `x`/`x_sum`/`x_count`, and a sample with no
declared family starts an untyped family of its own name.

Speed comes from two things (a rack's scrape set is ~90 pages a second): each line's
`name{labels}` text is looked up in a cache, so the labels of a series are parsed once and then
shared by every later page of the same endpoint (the text, not its parse, is the key, so a hit is
always exact); and a `want` filter skips the lines of families the caller does not need without
parsing them. The one thing a filter changes: skipped lines are not validated.

Any malformed page raises ExpositionError naming the line; nothing else escapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

METRIC_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
"""The TYPE values of format 0.0.4."""

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(,|\Z)', re.S)
_LABEL_ESCAPE_RE = re.compile(r'\\[\\"n]')
_HELP_ESCAPE_RE = re.compile(r"\\[\\n]")
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_CACHE_LIMIT = 200_000
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
    """

    name: str
    type: str = "untyped"
    help: str | None = None
    samples: list[Sample] = field(default_factory=list)

    def values(self, name: str | None = None) -> Iterator[tuple[Labels, float]]:
        """(labels, value) of the samples named `name` (default: the family's name)."""
        wanted = self.name if name is None else name
        return ((s.labels, s.value) for s in self.samples if s.name == wanted)


_new_sample = tuple.__new__
_SKIP = Family("")
"""Marks a sample name whose family the caller's `want` filter excluded."""


def _parse_value(text: str, lineno: int, what: str) -> float:
    # Python's float() also takes "1_000"; Go's ParseFloat (the format's definition) does not.
    if "_" in text:
        raise ExpositionError(lineno, f"invalid {what} {text!r}")
    try:
        return float(text)
    except ValueError:
        raise ExpositionError(lineno, f"invalid {what} {text!r}") from None


def _parse_timestamp(text: str, lineno: int) -> int:
    if "_" in text:
        raise ExpositionError(lineno, f"invalid timestamp {text!r} (want integer milliseconds)")
    try:
        return int(text)
    except ValueError:
        raise ExpositionError(lineno, f"invalid timestamp {text!r} (want integer milliseconds)") from None


_VALID_NAMES: set[str] = set()


def _check_name(name: str, lineno: int) -> None:
    if name in _VALID_NAMES:
        return
    if not _NAME_RE.fullmatch(name):
        raise ExpositionError(lineno, f"invalid metric name {name!r}")
    if len(_VALID_NAMES) > 50_000:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(name)


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


class ExpositionParser:
    """A text-format parser with a cache of parsed series heads (`name{labels}` text).

    Keep one per scrape target, or share one: the cache is keyed by exact text so sharing is safe,
    and dict operations are atomic under the GIL so threads may share it too.
    """

    def __init__(self) -> None:
        """Create a parser with an empty series cache."""
        self._heads: dict[str, tuple[str, Labels]] = {}
        self._bounded: set[tuple[str, str]] = set()
        """(histogram|summary, head) pairs whose `le`/`quantile` label has been checked."""

    def _head(self, head: str, brace: int, lineno: int) -> tuple[str, Labels]:
        """Parse and cache `name{labels}` (brace: index of `{`, -1 when there are no labels)."""
        if brace < 0:
            _check_name(head, lineno)
            parsed = (head, EMPTY_LABELS)
        else:
            name = head[:brace].rstrip(" \t")
            _check_name(name, lineno)
            if not head.endswith("}"):
                raise ExpositionError(lineno, "label set is not closed with '}'")
            body = head[brace + 1 : -1]
            parsed = (name, parse_labels(body, lineno) if body else EMPTY_LABELS)
        if len(self._heads) >= _CACHE_LIMIT:
            self._heads.clear()
            self._bounded.clear()
        self._heads[head] = parsed
        return parsed

    def parse(self, text: str | bytes, want: Callable[[str], bool] | None = None) -> dict[str, Family]:
        """Parse one page into its families, by family name, in order of first appearance.

        Args:
            text: the page (bytes are decoded as UTF-8).
            want: if given, called once per family name; families it rejects are left out and
                their sample lines are skipped unparsed.

        Raises:
            ExpositionError: the page is not valid exposition format.
        """
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ExpositionError(0, f"page is not UTF-8 (byte {exc.start})") from None
        families: dict[str, Family] = {}
        by_sample: dict[str, Family] = {}
        typed: set[str] = set()
        heads = self._heads
        bounded = self._bounded
        new = _new_sample
        skip = _SKIP
        skip_prefixes: tuple[str, ...] = ()
        for lineno, raw in enumerate(text.split("\n"), 1):
            line = raw.strip()
            if not line or line.startswith(skip_prefixes):
                continue
            if line[0] == "#":
                # Fast path: HELP/TYPE of a family the filter already excluded.
                if want is not None and line.startswith(("# HELP ", "# TYPE ")):
                    end = line.find(" ", 7)
                    if by_sample.get(line[7:] if end < 0 else line[7:end]) is skip:
                        continue
                self._comment(line, lineno, families, by_sample, typed, want)
                continue
            # Fast path: `name{labels} value` with a head parsed on an earlier page. A cached head is
            # always a bare `name{...}` or `name`, so a hit also proves there is no timestamp.
            head, _, value_text = line.rpartition(" ")
            parsed = heads.get(head)
            if parsed is not None:
                family = by_sample.get(parsed[0])
                if family is not None and family is not skip:
                    try:
                        if "_" in value_text:
                            raise ValueError(value_text)
                        value = float(value_text)
                    except ValueError:
                        raise ExpositionError(lineno, f"invalid value {value_text!r}") from None
                    kind = family.type
                    if (kind == "histogram" or kind == "summary") and (kind, head) not in bounded:
                        self._check_bound(family, parsed, lineno)
                        bounded.add((kind, head))
                    family.samples.append(new(Sample, (parsed[0], parsed[1], value, None)))
                    continue
            brace = line.find("{")
            if brace < 0:
                parts = line.split()
                name = parts[0]
            else:
                name = line[:brace].rstrip(" \t")
            family = by_sample.get(name)
            if family is skip:
                # The next lines are most likely more of this name (a histogram's buckets).
                skip_prefixes = (name + "{", name + " ", name + "\t")
                continue
            if family is None:
                if name in families:
                    raise ExpositionError(lineno, f"sample {name} is not valid in histogram {name}")
                _check_name(name, lineno)
                if want is not None and not want(name):
                    by_sample[name] = skip
                    skip_prefixes = (name + "{", name + " ", name + "\t")
                    continue
                family = by_sample[name] = families[name] = Family(name)
            if brace < 0:
                head = name
                rest = parts[1:]
            else:
                close = line.rfind("}")
                if close < brace:
                    raise ExpositionError(lineno, "label set is not closed with '}'")
                head = line[: close + 1]
                rest = line[close + 1 :].split()
            parsed = heads.get(head)
            if parsed is None:
                parsed = self._head(head, brace, lineno)
            count = len(rest)
            if count == 1:
                timestamp = None
            elif count == 2:
                timestamp = _parse_timestamp(rest[1], lineno)
            else:
                what = "a value" if not count else "a value and at most a timestamp"
                raise ExpositionError(lineno, f"sample {name} needs {what} after its labels")
            value_text = rest[0]
            try:
                if "_" in value_text:
                    raise ValueError(value_text)
                value = float(value_text)
            except ValueError:
                raise ExpositionError(lineno, f"invalid value {value_text!r} for {name}") from None
            kind = family.type
            if (kind == "histogram" or kind == "summary") and (kind, head) not in bounded:
                self._check_bound(family, parsed, lineno)
                bounded.add((kind, head))
            family.samples.append(new(Sample, (parsed[0], parsed[1], value, timestamp)))
        return families

    @staticmethod
    def _check_bound(family: Family, parsed: tuple[str, Labels], lineno: int) -> None:
        """Histogram buckets need a numeric `le`, summary quantiles a numeric `quantile`."""
        name, labels = parsed
        if family.type == "histogram":
            if not name.endswith("_bucket"):
                return
            key = "le"
        elif name == family.name:
            key = "quantile"
        else:
            return
        bound = labels.get(key)
        if bound is None:
            raise ExpositionError(lineno, f"{family.type} sample {name} has no {key!r} label")
        _parse_value(bound, lineno, f"{key!r} label")

    @staticmethod
    def _comment(
        line: str,
        lineno: int,
        families: dict[str, Family],
        by_sample: dict[str, Family],
        typed: set[str],
        want: Callable[[str], bool] | None,
    ) -> None:
        """Apply a `#` line: HELP and TYPE declare families, anything else is a comment."""
        parts = line[1:].split(None, 2)
        if not parts or parts[0] not in ("HELP", "TYPE"):
            return
        keyword = parts[0]
        if len(parts) < 2:
            raise ExpositionError(lineno, f"{keyword} line without a metric name")
        name = parts[1]
        _check_name(name, lineno)
        rest = parts[2] if len(parts) == 3 else ""
        if keyword == "TYPE":
            kind = rest.lower()
            if kind not in METRIC_TYPES:
                raise ExpositionError(lineno, f"unknown metric type {rest!r} for {name}")
            if name in typed:
                raise ExpositionError(lineno, f"second TYPE line for {name}")
            typed.add(name)
        family = families.get(name)
        if family is None:
            skipped = by_sample.get(name) is _SKIP or (want is not None and not want(name))
            family = _SKIP if skipped else Family(name)
            if not skipped:
                families[name] = family
            # A family's exact name wins over a histogram/summary suffix claim (x_count), as in Go.
            if by_sample.get(name) is not _SKIP:
                by_sample[name] = family
        if keyword == "HELP":
            if family is not _SKIP:
                if family.help is not None:
                    raise ExpositionError(lineno, f"second HELP line for {name}")
                family.help = _HELP_ESCAPE_RE.sub(_unescape, rest) if "\\" in rest else rest
            return
        if family.samples:
            raise ExpositionError(lineno, f"TYPE line for {name} after its samples")
        if family is not _SKIP:
            family.type = kind
        if kind == "histogram":
            suffixes: tuple[str, ...] = ("_bucket", "_sum", "_count")
            if by_sample.get(name) is family:
                del by_sample[name]
        elif kind == "summary":
            suffixes = ("_sum", "_count")
        else:
            suffixes = ()
        for suffix in suffixes:
            # An exact family of that name (declared earlier) wins, as in the Go parser.
            by_sample.setdefault(name + suffix, family)


_DEFAULT_PARSER = ExpositionParser()


def parse(text: str | bytes, want: Callable[[str], bool] | None = None) -> dict[str, Family]:
    """Parse a page with a shared module-level ExpositionParser (see ExpositionParser.parse)."""
    return _DEFAULT_PARSER.parse(text, want)


def iter_samples(families: Iterable[Family]) -> Iterator[Sample]:
    """Every sample of the given families, in page order within each family."""
    for family in families:
        yield from family.samples
