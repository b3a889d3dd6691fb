"""A page parses to the same result the first time and every time after, whatever the parser has seen.

ExpositionParser keeps state between pages (parsed series heads, declarations, the last page's shape)
so that the next page of an endpoint skips work. None of it may change a verdict or a value: every
fast path falls back to the line-by-line parser on anything it does not recognise. Issue 17 found
`a{foo="bar"} 1<TAB>000` (prometheus_client's test_timestamps) accepted by a fresh parser and refused
by the same parser on the next scrape, because the second fast path raised instead of falling back.

Pages here are rendered from one structure with varied blanks (tabs, runs of blanks, leading and
trailing blanks, CRLF), timestamps, escapes, and values Python's float() reads but Prometheus does not
(`1_0`, `1e400`, `-nan`, Arabic-Indic digits), so each property runs over valid and invalid pages.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collectors.promtext import ExpositionParser
from collectors.promtext_syntax import ExpositionError

BLANKS = st.sampled_from([" ", " ", " ", "\t", "  ", " \t", "\t "])
EDGE = st.sampled_from(["", "", "", " ", "\t", " \t"])
GOOD_VALUES = st.sampled_from(["1", "0", "-2.5", "3e2", ".5", "7.", "NaN", "+Inf", "-Inf", "inf", "Infinity"])
FLOAT_ONLY_VALUES = st.sampled_from(["1e400", "-1E999", "-nan", "+NaN", "١", "٣.٥"])
"""Read by Python's float(), refused by Go's ParseFloat (so by Prometheus)."""
VALUES = st.one_of(GOOD_VALUES, GOOD_VALUES, FLOAT_ONLY_VALUES, st.sampled_from(["1_0", "x", "", "0x1p3"]))
VALUE_SLOT = "\x01"
TIMESTAMPS = st.sampled_from(
    [None, None, "0", "000", "1700000000123", "-5", "+5", "9223372036854775808", "1.5"]
)
LABEL_VALUES = st.sampled_from(
    ["", "x", 'q\\"uote', "back\\\\slash", "new\\nline", "sp ace", "t\tab", "\\q", "}"]
)


@st.composite
def structure(draw) -> list[tuple]:
    """The lines of a page, blanks and values not yet chosen: ("sample", name, labels), ("meta", text)."""
    lines: list[tuple] = []
    for index in range(draw(st.integers(1, 4))):
        name = f"m{index}"
        kind = draw(st.sampled_from(["gauge", "counter", "histogram", "summary", None]))
        if draw(st.booleans()):
            lines.append(("meta", f"# HELP {name} help\\n{index}"))
        if kind is not None:
            lines.append(("meta", f"# TYPE {name} {kind}"))
        for _ in range(draw(st.integers(1, 3))):
            labels = draw(st.lists(st.sampled_from(["a", "b", "le", "quantile"]), unique=True, max_size=2))
            pairs = [(label, draw(LABEL_VALUES)) for label in labels]
            suffix = draw(st.sampled_from(["", "", "_bucket", "_sum", "_count"]))
            lines.append(("sample", name + suffix, pairs))
        if draw(st.booleans()):
            lines.append(
                ("meta", draw(st.sampled_from(["", "#", "# a comment", "#TYPE m0 bogus", "# HELP"])))
            )
    return lines


@st.composite
def rendering(draw, lines: list[tuple]) -> str:
    """One page of the structure, values left as VALUE_SLOT; blanks drawn, or (half of the pages) the
    plain `name{labels} value` lines that the fast paths and the page shape read."""
    plain = draw(st.booleans())
    blanks, edge = (st.just(" "), st.just("")) if plain else (BLANKS, EDGE)
    out = []
    for line in lines:
        if line[0] == "meta":
            out.append(draw(edge) + line[1])
            continue
        _, name, pairs = line
        value, timestamp = VALUE_SLOT, (None if plain else draw(TIMESTAMPS))
        head = name
        if pairs or draw(st.booleans()):
            inner = ",".join(f'{draw(edge)}{k}{draw(edge)}="{v}"' for k, v in pairs)
            head += draw(st.sampled_from(["", " "])) + "{" + inner + draw(st.sampled_from(["", ","])) + "}"
        text = draw(edge) + head + draw(blanks) + value
        if timestamp is not None:
            text += draw(blanks) + timestamp
        out.append(text + draw(edge))
    ending = "\n" if plain else draw(st.sampled_from(["\n", "\n", "\r\n"]))
    return ending.join(out) + ending


def outcome(parser: ExpositionParser, page: str) -> tuple:
    """What a parse gives, comparable across parses: the families, or the error."""
    try:
        families = parser.parse(page)
    except ExpositionError as err:
        return ("error", err.line, err.message)
    return (
        "ok",
        [
            (
                f.name,
                f.type,
                f.help,
                f.duplicates,
                [(s.name, sorted(s.labels.items()), _value(s.value), s.timestamp_ms) for s in f.samples],
            )
            for f in families.values()
        ],
    )


def _value(value: float) -> float | str:
    return "NaN" if math.isnan(value) else value


def fill(template: str, values: list[str]) -> str:
    parts = template.split(VALUE_SLOT)
    return "".join(part + value for part, value in zip(parts, [*values, ""], strict=True))


@st.composite
def page_pairs(draw) -> tuple[str, str]:
    """Two scrapes of one structure: the second keeps the first's blanks (or draws its own), and each
    of its values is the first's or another (a value the first scrape's fast path never saw)."""
    lines = draw(structure())
    template = draw(rendering(lines))
    slots = template.count(VALUE_SLOT)
    values = [draw(VALUES) for _ in range(slots)]
    later = draw(st.one_of(st.just(template), rendering(lines)))
    changed = [draw(VALUES) if draw(st.integers(0, 3)) == 0 else value for value in values]
    return fill(template, values), fill(later, changed)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page_pairs())
@example(('# TYPE m gauge\nm 1\nm{a="b"} 2\n', '# TYPE m gauge\nm 1e400\nm{a="b"} 2\n'))
@example(('# TYPE m gauge\nm 1\nm{a="b"} 2\n', '# TYPE m gauge\nm -nan\nm{a="b"} 2\n'))
@example(('# TYPE m gauge\nm 1\nm{a="b"} 2\n', '# TYPE m gauge\nm ١\nm{a="b"} 2\n'))
@example(("m 1\n", "m 1\t000\n"))
def test_a_page_parses_the_same_first_time_every_time_and_after_any_page(pair):
    first, second = pair
    fresh = outcome(ExpositionParser(), second)
    parser = ExpositionParser()
    # The same page again and again: cached heads, then the recorded page shape.
    assert [outcome(parser, second) for _ in range(3)] == [fresh] * 3
    # After another page of the same series (what the next scrape of an endpoint is).
    parser = ExpositionParser()
    outcome(parser, first)
    assert outcome(parser, second) == fresh
    assert outcome(parser, second) == fresh
    # A sibling sharing those caches, and the module's shared parser state (shapes off).
    assert outcome(parser.sibling(), second) == fresh
    shared = ExpositionParser(shapes=False)
    outcome(shared, first)
    assert outcome(shared, second) == fresh


def test_a_tab_before_the_timestamp_is_read_the_same_on_the_second_scrape():
    """Issue 17's case: prometheus_client tests/test_parser.py test_timestamps writes a tab there."""
    page = '# TYPE a counter\n# HELP a help\na{foo="bar"} 1\t000\n'
    parser = ExpositionParser()
    expected = [("a", [("foo", "bar")], 1.0, 0)]
    for _ in range(3):
        samples = parser.parse(page)["a"].samples
        assert [(s.name, sorted(s.labels.items()), s.value, s.timestamp_ms) for s in samples] == expected
