"""Parser for the Prometheus text exposition format 0.0.4, built for the per-tick scrape path.

It accepts what a Prometheus scrape accepts and refuses what it refuses: lines are read as Prometheus'
lexer and parser read them (model/textparse/promlex.l and promparse.go at v2.42.0, via
collectors.promtext_syntax), HELP and TYPE lines are metadata that never refuse a sample (the last one
wins), and a syntax error anywhere fails the page, as it fails a scrape. docs/parser.md has the table,
and the few places we differ on purpose (CRLF accepted; quoted UTF-8 names refused).

Family grouping follows the Go parser (expfmt.TextParser): a sample joins the family declared for its
name wherever it appears, a histogram owns `x_bucket`/`x_sum`/`x_count` (and `x`), a summary `x`/`x_sum`/
`x_count`, and a sample with no declared family starts an untyped family of its own name.

Speed comes from two things (a rack's scrape set is ~90 pages a second): each line's
`name{labels}` text is looked up in a cache, so the labels of a series are parsed once and then
shared by every later page of the same endpoint (the text, not its parse, is the key, so a hit is
always exact); and a `want` filter skips the lines of families the caller does not need without
parsing them. The one thing a filter changes: skipped lines are not validated. Every fast path falls
back to the full reading on anything it does not recognise, so a page parses to the same result the
first time and every time after, whatever the parser read before.

A series repeated on a page keeps its first sample only; the repeats are counted per family
(Family.duplicates, see drop_duplicates), on the line-by-line path and the page-shape path alike.

Any malformed page raises ExpositionError naming the line; nothing else escapes (but PageOverBudget
when parse() is told to give up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter

from collectors.page_budget import lines_until
from collectors.promtext_shape import PageShape
from collectors.promtext_syntax import (
    CACHE_LIMIT,
    EMPTY_LABELS,
    SKIP,
    SPECIAL_VALUES,
    Declaration,
    ExpositionError,
    Family,
    Labels,
    Sample,
    declaration,
    decode_page,
    new_sample,
    parse_labels,
    sample_name,
    split_sample,
)


class ExpositionParser:
    """A text-format parser with a cache of parsed series heads (`name{labels}` text).

    Keep one per scrape target, or share one: the cache is keyed by exact text so sharing is safe,
    and dict operations are atomic under the GIL so threads may share it too.
    """

    def __init__(self, *, shapes: bool = True) -> None:
        """Create a parser with an empty series cache.

        Args:
            shapes: remember the last page's shape (collectors.promtext_shape) so that a next page
                differing only in values skips the line loop; for a parser kept per endpoint. A
                parser shared by many endpoints would only re-record shapes, so it turns this off.
        """
        self._heads: dict[str, tuple[str, Labels]] = {}
        self._shapes = shapes
        self._shape: PageShape | None = None
        self._declarations: dict[str, Declaration] = {}
        self._interned: dict[tuple[str, Labels], Labels] = {}
        """One Labels object per (name, label set), whatever the text's label order or blanks: a
        repeated series then repeats an object, which drop_duplicates checks by id."""

    def sibling(self) -> ExpositionParser:
        """A parser with its own page shape that shares this one's caches (endpoints of one kind).

        Servers of one engine print the same series heads, so a rack's 72 of them parse their first
        page with one cache instead of 72 cold ones.
        """
        other = ExpositionParser(shapes=self._shapes)
        other._heads, other._declarations = self._heads, self._declarations
        other._interned = self._interned
        return other

    def _head(self, head: str, name: str, body: str | None, lineno: int) -> tuple[str, Labels]:
        """Parse and cache a checked `name{labels}` (body: the text between the braces, or None)."""
        labels = parse_labels(body, lineno) if body else EMPTY_LABELS
        parsed = (name, self._interned.setdefault((name, labels), labels))
        if len(self._heads) >= CACHE_LIMIT:
            self._heads.clear()
            self._interned.clear()
        self._heads[head] = parsed
        return parsed

    def parse(
        self,
        text: str | bytes,
        want: Callable[[str], bool] | None = None,
        *,
        give_up: Callable[[], bool] | None = None,
    ) -> dict[str, Family]:
        """Parse one page into its families, by family name, in order of first appearance.

        Args:
            text: the page (bytes are decoded as UTF-8).
            want: if given, called once per family name; families it rejects are left out and
                their sample lines are skipped unparsed.
            give_up: asked every 1,024 lines; True abandons the page (collectors.page_budget).

        Raises:
            ExpositionError: the page is not valid exposition format.
            PageOverBudget: `give_up` said so before the last line.
        """
        if isinstance(text, bytes | bytearray):
            text = decode_page(bytes(text))
        lines = text.split("\n")
        shape = self._shape
        if shape is not None and shape.want is want:
            fitted = shape.fill(lines)
            if fitted is not None:
                return fitted
        families: dict[str, Family] = {}
        by_sample: dict[str, Family] = {}
        # Lines by the path they took, for the page's shape: fast-path samples, and filtered lines.
        fast: list[tuple[int, Family]] = []
        prefixed: list[tuple[int, tuple[str, ...]]] = []
        named: list[int] = []
        heads = self._heads
        declarations = self._declarations
        new = new_sample
        skip = SKIP
        skip_prefixes: tuple[str, ...] = ()
        numbered = enumerate(lines, 1) if give_up is None else lines_until(lines, give_up)
        for lineno, raw in numbered:
            if raw.startswith(skip_prefixes):
                prefixed.append((lineno - 1, skip_prefixes))
                continue
            # Fast path, most lines of a page: `name{labels} value` with a head parsed on an earlier
            # line, read off the raw line. A cached head starts with its name and was checked whole,
            # so the line is valid when its value is: one token of printable ASCII (no tab, CR or
            # other blank: a tab-separated timestamp stays in the token and fails here), no `_`,
            # finite or spelled as Go's ParseFloat spells Inf/NaN. Anything else takes the full path.
            head, _, value_text = raw.rpartition(" ")
            parsed = heads.get(head)
            if (
                parsed is not None
                and value_text.isprintable()
                and value_text.isascii()
                and "_" not in value_text
            ):
                family = by_sample.get(parsed[0])
                if family is not None and family is not skip:
                    try:
                        value = float(value_text)
                    except ValueError:
                        value = None
                    if value is not None and (value - value == 0.0 or value_text.lower() in SPECIAL_VALUES):
                        family.samples.append(new(Sample, (parsed[0], parsed[1], value, None)))
                        fast.append((lineno - 1, family))
                        continue
            # The full path reads the line as promlex.l does; a trailing CR is dropped (CRLF pages).
            line = raw[:-1] if raw.endswith("\r") else raw
            line = line.lstrip(" \t") if line.startswith((" ", "\t")) else line
            if not line or line.startswith(skip_prefixes):
                continue
            if line[0] == "#":
                decl = declarations.get(line)
                if decl is None:
                    decl = declaration(line)
                    if len(declarations) >= CACHE_LIMIT:
                        declarations.clear()
                    declarations[line] = decl
                if decl.keyword is None:
                    if decl.ends_page:
                        break
                    continue
                if want is not None:
                    # Fast paths: HELP/TYPE of a family the filter excluded, or the HELP line that
                    # introduces one (a vLLM page declares ~50 families; the mapping reads ~10).
                    if decl.filter_name is not None and by_sample.get(decl.filter_name) is skip:
                        continue
                    name = decl.name
                    if (
                        not decl.error
                        and decl.keyword == "HELP"
                        and name not in families
                        and (by_sample.get(name) is skip or not want(name))
                    ):
                        by_sample[name] = skip
                        continue
                self._declare(decl, lineno, families, by_sample, want)
                continue
            if line[0] == "\x00":
                break  # promlex.l: a NUL where a token starts is the end of the page
            if want is not None:
                name = sample_name(line)
                family = by_sample.get(name)
                if family is None and name and not want(name):
                    family = by_sample[name] = skip
                if family is skip:
                    # Unread, unchecked (the filter's one cost); the next lines are most likely
                    # more of this name (a histogram's buckets).
                    skip_prefixes = (name + "{", name + " ", name + "\t")
                    named.append(lineno - 1)
                    continue
            name, head, body, value, timestamp = split_sample(line, lineno)
            family = by_sample.get(name)
            if family is None:
                family = by_sample[name] = families[name] = Family(name)
            parsed = heads.get(head)
            if parsed is None:
                parsed = self._head(head, name, body, lineno)
            family.samples.append(new(Sample, (parsed[0], parsed[1], value, timestamp)))
            if raw == head + " " + value_text and timestamp is None:
                # `head value` as the fast path reads it (a first page, a family's first sample).
                fast.append((lineno - 1, family))
        shape = None
        if self._shapes and PageShape.fits(fast, families):
            shape = PageShape(lines, fast, prefixed, named, families, want)
        # After the shape is recorded: it keeps every line, and drops the same repeats on each fill.
        kept = drop_duplicates(families)
        if shape is not None:
            shape.kept = kept
        self._shape = shape
        return families

    @staticmethod
    def _declare(
        decl: Declaration,
        lineno: int,
        families: dict[str, Family],
        by_sample: dict[str, Family],
        want: Callable[[str], bool] | None,
    ) -> None:
        """Apply a HELP or TYPE line to the page's families.

        Prometheus' scrape keeps HELP and TYPE as metadata beside the samples, never as a check on
        them (scrape/scrape.go: setType/setHelp, the last line wins): a repeated line, a TYPE after
        the samples, a histogram bucket without `le` or a summary sample without `quantile` all pass.
        So here: the last HELP and TYPE of a family win, and no sample is refused for its family.
        """
        if decl.error:
            raise ExpositionError(lineno, decl.error)
        keyword, name = decl.keyword, decl.name
        family = families.get(name)
        if family is None:
            skipped = by_sample.get(name) is SKIP or (want is not None and not want(name))
            family = SKIP if skipped else Family(name)
            if not skipped:
                families[name] = family
            # A family's exact name wins over a histogram/summary suffix claim (x_count), as in Go.
            if by_sample.get(name) is not SKIP:
                by_sample[name] = family
        if keyword == "HELP":
            if family is not SKIP:
                family.help = decl.payload
            return
        kind = decl.payload
        if family is not SKIP:
            family.type = kind
        if kind == "histogram":
            suffixes: tuple[str, ...] = ("_bucket", "_sum", "_count")
        elif kind == "summary":
            suffixes = ("_sum", "_count")
        else:
            suffixes = ()
        for suffix in suffixes:
            # An exact family of that name (declared or sampled earlier) wins, as in the Go parser.
            by_sample.setdefault(name + suffix, family)


def drop_duplicates(families: dict[str, Family]) -> dict[str, list[int]]:
    """Keep the first sample of each series (sample name, label set, timestamp), as Prometheus does.

    Prometheus >= 2.52 appends only the first sample of a series repeated on one page and counts the
    repeats in prometheus_target_scrapes_sample_duplicate_timestamp_total (scrape/scrape.go); summing
    them would double a gauge or a counter. Each family's repeats are counted in `duplicates`.

    Returns:
        the kept sample positions of each family that had repeats (PageShape.fill applies them).
    """
    kept: dict[str, list[int]] = {}
    for name, family in families.items():
        samples = family.samples
        if len(samples) < 2 or len(set(map(id, map(_labels_of, samples)))) == len(samples):
            continue  # label sets are interned per name: a repeated series repeats its Labels object
        # The timestamp is part of the key: repeats with distinct explicit timestamps are separate
        # samples (accepted again since Prometheus 2.54, prometheus/prometheus#14685).
        keys = [(s[0], s[1], s[3]) for s in samples]
        if len(set(keys)) == len(keys):
            continue
        seen: set[tuple[str, Labels, int | None]] = set()
        first: list[int] = []
        for position, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                first.append(position)
        family.samples = [samples[i] for i in first]
        family.duplicates = len(samples) - len(first)
        kept[name] = first
    return kept


_labels_of = itemgetter(1)
_DEFAULT_PARSER = ExpositionParser(shapes=False)


def parse(text: str | bytes, want: Callable[[str], bool] | None = None) -> dict[str, Family]:
    """Parse a page with a shared module-level ExpositionParser (see ExpositionParser.parse)."""
    return _DEFAULT_PARSER.parse(text, want)


def iter_samples(families: Iterable[Family]) -> Iterator[Sample]:
    """Every sample of the given families, in page order within each family."""
    for family in families:
        yield from family.samples
