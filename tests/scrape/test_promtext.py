"""The exposition-format parser: each tricky case of format 0.0.4, the errors, garbage resistance."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.promtext import ExpositionError, ExpositionParser, Labels, parse

PAGES = Path(__file__).parent.parent / "data" / "pages"


def one(text: str, name: str):
    return ExpositionParser().parse(text)[name]


def test_help_type_and_plain_comments():
    fams = parse("# a comment\n# HELP m Some help.\n# TYPE m gauge\n# another\nm 1\n")
    assert list(fams) == ["m"]
    assert (fams["m"].type, fams["m"].help, [s.value for s in fams["m"].samples]) == (
        "gauge",
        "Some help.",
        [1.0],
    )


def test_help_escapes_only_backslash_and_newline():
    fam = one('# HELP m a\\\\b\\nc \\"q\\"\nm 1\n', "m")
    assert fam.help == 'a\\b\nc \\"q\\"'


def test_escaped_label_values_and_delimiters_inside_quotes():
    text = (
        'msdos{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\"",'
        'x="a,b}=c # d"} 1.458255915e9\n'
    )
    sample = one(text, "msdos").samples[0]
    assert sample.labels == {
        "path": "C:\\DIR\\FILE.TXT",
        "error": 'Cannot find file:\n"FILE.TXT"',
        "x": "a,b}=c # d",
    }
    assert sample.value == 1.458255915e9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NaN", math.nan),
        ("+Inf", math.inf),
        ("-Inf", -math.inf),
        ("1e+06", 1e6),
        ("1.903884211e+09", 1.903884211e9),
        ("-0.5", -0.5),
        ("42", 42.0),
        ("6.000117e+06", 6000117.0),
    ],
)
def test_values(text, expected):
    value = one(f"m {text}\n", "m").samples[0].value
    assert value == expected or (math.isnan(expected) and math.isnan(value))


def test_optional_timestamps_in_ms_unsigned_as_promlex_reads_them():
    samples = one('m 1 1700000000123\nm{a="b"} 2 0\nm{a="c"} 3\n', "m").samples
    assert [s.timestamp_ms for s in samples] == [1700000000123, 0, None]
    # promlex.l's timestamp is {D}+ (no sign) and promparse.go reads it with ParseInt(.., 64).
    for bad in ("-5", "+5", "9223372036854775808", "١"):
        with pytest.raises(ExpositionError, match="timestamp"):
            ExpositionParser().parse(f"m 1 {bad}\n")


def test_le_written_three_ways_and_sum_before_buckets():
    text = (
        "# TYPE h histogram\nh_sum 3.5\n"
        'h_bucket{le="1"} 1\nh_bucket{le="2.0"} 2\nh_bucket{le="+Inf"} 3\nh_count 3\n'
    )
    fam = one(text, "h")
    assert fam.type == "histogram"
    assert [(s.name, s.labels.get("le"), s.value) for s in fam.samples] == [
        ("h_sum", None, 3.5),
        ("h_bucket", "1", 1.0),
        ("h_bucket", "2.0", 2.0),
        ("h_bucket", "+Inf", 3.0),
        ("h_count", None, 3.0),
    ]


def test_summary_quantiles():
    fam = one('# TYPE s summary\ns{quantile="0.5"} 1\ns{quantile="1.0"} 2\ns_sum 3\ns_count 2\n', "s")
    assert [s.name for s in fam.samples] == ["s", "s", "s_sum", "s_count"]


def test_created_families_stay_separate_from_their_counter():
    fams = parse((PAGES / "vllm.txt").read_text())
    assert fams["vllm:prompt_tokens_total"].type == "counter"
    assert [s.value for s in fams["vllm:prompt_tokens_total"].samples] == [1.9004387e07]
    assert fams["vllm:prompt_tokens_created"].type == "gauge"
    assert fams["vllm:prompt_tokens_by_source_total"].samples[0].labels["source"] == "local_compute"


def test_untyped_metrics_blank_lines_crlf_whitespace_and_trailing_comma():
    text = '\r\n  # HELP u untyped one\r\n\r\nu{a="1",} 1\r\n\tu{a="2" , b = "x"}\t2\r\nv 3'
    fams = parse(text)
    assert fams["u"].type == "untyped" and fams["u"].help == "untyped one"
    assert [dict(s.labels) for s in fams["u"].samples] == [{"a": "1"}, {"a": "2", "b": "x"}]
    assert fams["v"].samples[0].value == 3.0


def test_counter_without_total_suffix_keeps_its_sample_name():
    fam = one('# TYPE nv_inference_count counter\nnv_inference_count{model="m"} 4200\n', "nv_inference_count")
    assert fam.samples[0].name == "nv_inference_count"


def test_samples_of_a_family_out_of_place_join_it_like_the_go_parser():
    fams = parse('# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\na{x="y"} 3\n')
    assert [s.value for s in fams["a"].samples] == [1.0, 3.0]


def test_labels_are_shared_immutable_and_hashable():
    parser = ExpositionParser()
    first = parser.parse('m{a="1"} 1\n')["m"].samples[0].labels
    second = parser.parse('m{a="1"} 2\n')["m"].samples[0].labels
    assert first is second and isinstance(first, Labels) and hash(first) == hash(Labels({"a": "1"}))
    with pytest.raises(TypeError):
        first["a"] = "2"  # type: ignore[index]
    assert first.without("a") == {}


def test_want_filter_skips_families_and_their_lines():
    text = (PAGES / "vllm.txt").read_text()
    fams = parse(text, want=lambda name: name == "vllm:time_to_first_token_seconds")
    assert list(fams) == ["vllm:time_to_first_token_seconds"]
    assert len(fams["vllm:time_to_first_token_seconds"].samples) == 25


def test_bytes_are_decoded_and_bad_utf8_is_an_exposition_error():
    assert parse(b"m 1\n")["m"].samples[0].value == 1.0
    with pytest.raises(ExpositionError, match="not UTF-8"):
        parse(b'm{a="\xff"} 1\n')


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('m{a="1" 2\n', 1, "not closed"),
        ("m{a=1} 2\n", 1, "malformed label set"),
        ('\nm{a="1",a="2"} 2\n', 2, "given twice"),
        ("m 1 2 3\n", 1, "at most a timestamp"),
        ("m\n", 1, "needs a value"),
        ("m abc\n", 1, "invalid value"),
        ("m 1_000\n", 1, "invalid value"),
        ("m 1 1.5\n", 1, "invalid timestamp"),
        ("9m 1\n", 1, "invalid metric name"),
        ("# TYPE m gaugehistogram\n", 1, "unknown metric type"),
        ("# TYPE m GAUGE\n", 1, "unknown metric type"),
        ("m 1e400\n", 1, "out of range"),
        ("m -nan\n", 1, "invalid value"),
        ("m \u0661\n", 1, "invalid value"),
        ("# HELP \n", 1, "expected a metric name after HELP"),
        ('{"a.b"} 1\n', 1, "quoted"),
        ('m{__name__="x"} 1\n', 1, "reserved"),
    ],
)
def test_malformed_pages_raise_one_error_naming_the_line(text, line, message):
    with pytest.raises(ExpositionError, match=message) as info:
        ExpositionParser().parse(text)
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab_:{}=",# \t\n\r\\019.+-eInfNa')), max_size=120))
def test_garbage_either_parses_or_raises_exposition_error(text):
    try:
        fams = ExpositionParser().parse(text)
    except ExpositionError:
        return
    for fam in fams.values():
        for sample in fam.samples:
            assert isinstance(sample.value, float)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode_either_parses_or_raises_exposition_error(text):
    with contextlib.suppress(ExpositionError):
        ExpositionParser().parse(text)
