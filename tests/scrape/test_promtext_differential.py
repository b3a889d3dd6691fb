"""Differential test: the parser against prometheus_client's parser on generated valid pages."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from collectors.promtext import ExpositionParser

LABEL_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not n.startswith("__") and n not in ("le", "quantile")
)
LABEL_VALUES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
BASES = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,10}", fullmatch=True)
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**15), max_value=10**15).map(float),
)
# Unsigned: promlex.l reads a timestamp as {D}+, so Prometheus refuses `-5` (prometheus_client reads it).
TIMESTAMPS = st.one_of(st.none(), st.integers(min_value=0, max_value=10**13))
HELPS = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).map(str.strip))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


@st.composite
def number(draw, value: float) -> str:
    """A value written as Go/Python/integer text."""
    style = draw(st.sampled_from(["go", "repr", "int"]))
    if style == "int" and math.isfinite(value) and value == int(value):
        return str(int(value))
    if style == "repr" and math.isfinite(value):
        return repr(value)
    return floatToGoString(value)


@st.composite
def label_text(draw) -> tuple[str, dict[str, str]]:
    names = draw(st.lists(LABEL_NAMES, max_size=3, unique=True))
    labels = {n: draw(LABEL_VALUES) for n in names}
    return ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()), labels


def sample_line(name: str, labels: str, value: str, ts: int | None) -> str:
    head = f"{name}{{{labels}}}" if labels else name
    return f"{head} {value}" + ("" if ts is None else f" {ts}")


@st.composite
def family(draw, index: int) -> tuple[str, list[str]]:
    kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary", "untyped", "bare"]))
    name = f"{draw(BASES)}_{index}" + ("_total" if kind == "counter" else "")
    lines: list[str] = []
    help_text = draw(HELPS)
    if help_text is not None:
        lines.append(f"# HELP {name} {escape_help(help_text)}".rstrip())
    if kind != "bare":
        lines.append(f"# TYPE {name} {kind}")
    samples: list[str] = []
    for _ in range(draw(st.integers(min_value=0 if kind != "bare" else 1, max_value=3))):
        labels, _ = draw(label_text())
        sep = "," if labels else ""
        if kind == "histogram":
            bounds = sorted(set(draw(st.lists(st.floats(-1e6, 1e6), max_size=4))))
            count = 0.0
            for le in bounds:
                count += draw(st.integers(0, 1000))
                le_text = draw(number(le))
                samples.append(
                    sample_line(f"{name}_bucket", f'{labels}{sep}le="{le_text}"', draw(number(count)), None)
                )
            samples.append(
                sample_line(f"{name}_bucket", f'{labels}{sep}le="+Inf"', draw(number(count)), None)
            )
            samples.append(sample_line(f"{name}_count", labels, draw(number(count)), draw(TIMESTAMPS)))
            samples.append(sample_line(f"{name}_sum", labels, draw(number(draw(VALUES))), None))
        elif kind == "summary":
            for q in draw(st.lists(st.sampled_from([0.5, 0.9, 0.99, 1.0]), unique=True, max_size=3)):
                samples.append(
                    sample_line(
                        name, f'{labels}{sep}quantile="{draw(number(q))}"', draw(number(draw(VALUES))), None
                    )
                )
            samples.append(sample_line(f"{name}_sum", labels, draw(number(draw(VALUES))), None))
            samples.append(sample_line(f"{name}_count", labels, draw(number(draw(st.integers(0, 99)))), None))
        else:
            samples.append(sample_line(name, labels, draw(number(draw(VALUES))), draw(TIMESTAMPS)))
    lines.extend(draw(st.permutations(samples)))
    return name, lines


@st.composite
def pages(draw) -> str:
    lines: list[str] = []
    for i in range(draw(st.integers(1, 6))):
        _, family_lines = draw(family(i))
        lines.extend(family_lines)
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "# just a comment", "#"])))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    return ending.join(lines) + ending


def ours(text: str) -> list[tuple]:
    out = []
    for fam in ExpositionParser().parse(text).values():
        assert fam.duplicates == first_samples(theirs_samples(text, fam.name))[1]
        name = (
            fam.name[: -len("_total")] if fam.type == "counter" and fam.name.endswith("_total") else fam.name
        )
        samples = [
            (s.name, dict(s.labels), s.value, None if s.timestamp_ms is None else s.timestamp_ms / 1000)
            for s in fam.samples
        ]
        out.append((name, fam.type, fam.help or "", samples))
    return out


def theirs(text: str) -> list[tuple]:
    out: list[tuple] = []
    for fam in text_string_to_metric_families(text):
        kind = "untyped" if fam.type == "unknown" else fam.type
        samples = [(s.name, dict(s.labels), float(s.value), s.timestamp) for s in fam.samples]
        # prometheus_client yields each sample of an undeclared metric as its own family.
        if (
            out
            and out[-1][0] == fam.name
            and kind == "untyped"
            and not fam.documentation
            and out[-1][1] == kind
        ):
            out[-1][3].extend(samples)
            continue
        out.append((fam.name, kind, fam.documentation, samples))
    return [(name, kind, doc, first_samples(samples)[0]) for name, kind, doc, samples in out]


def first_samples(samples: list[tuple]) -> tuple[list[tuple], int]:
    """Prometheus' scrape rule (>= 2.52): of a series repeated on a page (same name, labels and
    timestamp) the first sample is kept; returns the kept samples and how many repeats were dropped."""
    kept: list[tuple] = []
    keys: list[tuple] = []
    for sample in samples:
        name, labels, _, timestamp = sample
        key = (name, sorted(labels.items()), timestamp)
        if key not in keys:
            keys.append(key)
            kept.append(sample)
    return kept, len(samples) - len(kept)


def theirs_samples(text: str, family_name: str) -> list[tuple]:
    """The samples prometheus_client reads for one family, repeats included."""
    return [
        (s.name, dict(s.labels), float(s.value), s.timestamp)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if fam.name == family_name or fam.name + "_total" == family_name
    ]


def same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages())
def test_same_families_as_prometheus_client(text):
    assert_same_families(ours(text), theirs(text))


def assert_same_families(mine: list[tuple], ref: list[tuple]) -> None:
    assert [f[:3] for f in mine] == [f[:3] for f in ref]
    for (_, _, _, a), (_, _, _, b) in zip(mine, ref, strict=True):
        assert len(a) == len(b)
        for (an, al, av, at), (bn, bl, bv, bt) in zip(a, b, strict=True):
            assert (an, al, at) == (bn, bl, bt)
            assert same_value(av, bv)


# Label values full of escapes. In the text format a label value has exactly three escapes, \\ \" \n,
# undone in one left-to-right pass; a backslash before any other character stays as written, both
# characters kept: Prometheus' promparse (model/textparse/promparse.go, lvalReplacer, a
# strings.NewReplacer) and prometheus_client's parser (parser.py, ESCAPING_RE) agree on this.
# Each token is (text on the page, the value it stands for): the expected value is built alongside the
# text, independently of any parser. Tokens run into each other (`\\` then `n`, `\\` then `\"`), so
# unescaping in the wrong order (\n before \\) or in several passes reads a different value.
OTHER_AFTER_BACKSLASH = st.characters(blacklist_categories=("Cs",), blacklist_characters='\\"n\n\r')
ESCAPE_TOKENS = st.one_of(
    st.just(("\\\\", "\\")),
    st.just(("\\n", "\n")),
    st.just(('\\"', '"')),
    OTHER_AFTER_BACKSLASH.map(lambda c: ("\\" + c, "\\" + c)),
    st.sampled_from("ntq,}= {").map(lambda c: (c, c)),  # what a \\ or \" runs into
    st.characters(blacklist_categories=("Cs",), blacklist_characters='\\"\n\r').map(lambda c: (c, c)),
)


@st.composite
def escaped_value(draw) -> tuple[str, str]:
    """(the label value as written on the page, the value it stands for)."""
    tokens = draw(st.lists(ESCAPE_TOKENS, max_size=10))
    return "".join(t for t, _ in tokens), "".join(v for _, v in tokens)


@st.composite
def escape_pages(draw) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """A page of gauge and counter series whose label values are full of escapes, and the (sample
    name, labels) each line stands for, in page order."""
    lines: list[str] = []
    expected: list[tuple[str, dict[str, str]]] = []
    for index in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["gauge", "counter"]))
        name = f"esc_{index}" + ("_total" if kind == "counter" else "")
        lines.append(f"# TYPE {name} {kind}")
        seen: list[dict[str, str]] = []
        for _ in range(draw(st.integers(1, 4))):
            names = draw(st.lists(LABEL_NAMES, min_size=1, max_size=3, unique=True))
            written = {n: draw(escaped_value()) for n in names}
            labels = {n: value for n, (_, value) in written.items()}
            if labels in seen:
                continue  # a repeated series is dropped (tested above); keep this page about escapes
            seen.append(labels)
            body = ",".join(f'{n}="{text}"' for n, (text, _) in written.items())
            lines.append(sample_line(name, body, draw(number(draw(VALUES))), None))
            expected.append((name, labels))
    return "\n".join(lines) + "\n", expected


def parsed_series(families: dict) -> list[tuple[str, dict[str, str]]]:
    return [(s.name, dict(s.labels)) for fam in families.values() for s in fam.samples]


def reference_series(text: str) -> list[tuple[str, dict[str, str]]]:
    """prometheus_client's (sample name, labels), counter names with their _total as written."""
    return [(s.name, dict(s.labels)) for fam in text_string_to_metric_families(text) for s in fam.samples]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(escape_pages())
def test_escaped_label_values_match_prometheus_client_on_every_path(page):
    text, expected = page
    assert reference_series(text) == expected
    # A fresh parser (the line-by-line path with cold caches) ...
    parser = ExpositionParser()
    assert parsed_series(parser.parse(text)) == expected
    # ... the same parser again: cached series heads (which record the page's shape) ...
    assert parsed_series(parser.parse(text)) == expected
    # ... and a third time: the page-shape fast path fills the families without the line loop.
    assert parser._shape is not None and parser._shape.fill(text.split("\n")) is not None
    assert parsed_series(parser.parse(text)) == expected
    # ... and a sibling sharing those caches with a page shape of its own.
    assert parsed_series(parser.sibling().parse(text)) == expected
    assert_same_families(ours(text), theirs(text))
