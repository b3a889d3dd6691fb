"""Conformance: the parser gives the verdict and the values a Prometheus scrape gives.

Each case mirrors an upstream test (cited by repository, path, commit and test or row); the inputs are
written here, not copied files. The verdict is that of Prometheus' scrape parser, model/textparse
promparse.go and promlex.l at v2.42.0 (the Debian prometheus here), where a syntax error fails the
whole scrape (scrape/scrape.go, scrapeLoop.append: `break loop`, then the appender rolls back and the
target is down). What promparse accepts but the scrape then refuses counts as refused (a repeated label
name: the TSDB appender's ErrInvalidSample). Repeats of a series keep their first sample, as a scrape
does. prometheus/common's expfmt TextParser and prometheus_client are stricter or looser in places; a
case from their suites asserts Prometheus' verdict, and says so where they differ.

Cases where we differ on purpose carry `ours` and a reason (docs/parser.md lists each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from collectors.promtext import ExpositionParser
from collectors.promtext_syntax import ExpositionError

V2_42 = "225c61122d88b01d1f0eaaee0e05b6f3e0567ac0 (v2.42.0)"
PROMPARSE = f"prometheus/prometheus model/textparse/promparse_test.go@{V2_42}"
PROMPARSE_HEAD = (
    "prometheus/prometheus model/textparse/promparse_test.go@d15adb9ad7e5d9fbde3a9a8f30200593a5a14d86"
)
PROMLEX = f"prometheus/prometheus model/textparse/promlex.l@{V2_42}"
CLIENT_PY = "prometheus/client_python tests/test_parser.py@d0b497ffe069865537e55af52cb00c329d58a6f0"
COMMON = "prometheus/common expfmt/text_parse_test.go@d2417e2cbb82c4c81e4d28d55f354058169a9f08"
ISSUE = "issue 17 (rack-monitor), verdict from promparse.go/promlex.l v2.42.0"

REJECT = None
"""A case's `samples` when Prometheus fails the scrape."""


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    page: str | bytes
    samples: list[tuple] | None
    """(sample name, labels, value, timestamp ms or None) of every sample kept, any order; REJECT."""
    meta: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """family name -> (type, help) where the case checks metadata."""
    ours: str = ""
    """Why we differ from Prometheus on purpose (then `samples` is our verdict); "" when we agree."""


def s(name: str, value: float, ts: int | None = None, **labels: str) -> tuple:
    return (name, labels, value, ts)


NAN = float("nan")

CASES = [
    # --- promparse_test.go TestPromParse: one valid page, entry by entry.
    Case(
        "promparse-page-summary-blanks-commas",
        f"{PROMPARSE} TestPromParse",
        "# HELP go_gc_duration_seconds A summary of the GC invocation durations.\n"
        "# \tTYPE go_gc_duration_seconds summary\n"
        'go_gc_duration_seconds{quantile="0"} 4.9351e-05\n'
        'go_gc_duration_seconds{quantile="0.25",} 7.424100000000001e-05\n'
        'go_gc_duration_seconds{quantile="0.5",a="b"} 8.3835e-05\n'
        'go_gc_duration_seconds{quantile="0.8", a="b"} 8.3835e-05\n'
        'go_gc_duration_seconds{ quantile="0.9", a="b"} 8.3835e-05\n'
        "# Hrandom comment starting with prefix of HELP\n"
        "#\n"
        'wind_speed{A="2",c="3"} 12345\n'
        "# comment with escaped \\n newline\n"
        "# comment with escaped \\ escape character\n"
        "# HELP nohelp1\n"
        "# HELP nohelp2 \n"
        'go_gc_duration_seconds{ quantile="1.0", a="b" } 8.3835e-05\n'
        'go_gc_duration_seconds { quantile="1.0", a="b" } 8.3835e-05\n'
        'go_gc_duration_seconds { quantile= "1.0", a= "b", } 8.3835e-05\n'
        'go_gc_duration_seconds { quantile = "1.0", a = "b" } 8.3835e-05\n'
        "go_gc_duration_seconds_count 99\n"
        'some:aggregate:rate5m{a_b="c"}\t1\n'
        "# HELP go_goroutines Number of goroutines that currently exist.\n"
        "# TYPE go_goroutines gauge\n"
        "go_goroutines 33  \t123123\n"
        "_metric_starting_with_underscore 1\n"
        'testmetric{_label_starting_with_underscore="foo"} 1\n'
        'testmetric{label="\\"bar\\""} 1',
        [
            s("go_gc_duration_seconds", 4.9351e-05, quantile="0"),
            s("go_gc_duration_seconds", 7.424100000000001e-05, quantile="0.25"),
            s("go_gc_duration_seconds", 8.3835e-05, quantile="0.5", a="b"),
            s("go_gc_duration_seconds", 8.3835e-05, quantile="0.8", a="b"),
            s("go_gc_duration_seconds", 8.3835e-05, quantile="0.9", a="b"),
            s("wind_speed", 12345, A="2", c="3"),
            # Four lines of one series: the scrape appends the first (scrape/scrape.go).
            s("go_gc_duration_seconds", 8.3835e-05, quantile="1.0", a="b"),
            s("go_gc_duration_seconds_count", 99),
            s("some:aggregate:rate5m", 1, a_b="c"),
            s("go_goroutines", 33, 123123),
            s("_metric_starting_with_underscore", 1),
            s("testmetric", 1, _label_starting_with_underscore="foo"),
            s("testmetric", 1, label='"bar"'),
        ],
        {
            "go_gc_duration_seconds": ("summary", "A summary of the GC invocation durations."),
            "nohelp1": ("untyped", ""),
            "nohelp2": ("untyped", ""),
            "go_goroutines": ("gauge", "Number of goroutines that currently exist."),
        },
    ),
    Case(
        "promparse-head-page-histogram-no-comma-help-after-type",
        f"{PROMPARSE_HEAD} TestPromParse (the lines added since v2.42.0)",
        "# HELP prometheus_http_request_duration_seconds Histogram of latencies for HTTP requests.\n"
        "# TYPE prometheus_http_request_duration_seconds histogram\n"
        'prometheus_http_request_duration_seconds_bucket{handler="/",le="1"} 423\n'
        'prometheus_http_request_duration_seconds_bucket{handler="/",le="2"} 1423\n'
        'prometheus_http_request_duration_seconds_bucket{handler="/",le="+Inf"} 1423\n'
        'prometheus_http_request_duration_seconds_sum{handler="/"} 2000\n'
        'prometheus_http_request_duration_seconds_count{handler="/"} 1423\n'
        'go_gc_duration_seconds { quantile = "2.0" a = "b" } 8.3835e-05\n'
        "# TYPE some_counter_total counter\n"
        "# HELP some_counter_total Help after type.\n"
        "some_counter_total 12\n"
        "# HELP nohelp3\n"
        'testmetric{le="10"} 1\n'
        "# HELP type_and_unit_test1 Type specified in metadata overrides.\n"
        "# TYPE type_and_unit_test1 gauge\n"
        'type_and_unit_test1{__type__="counter"} 123\n'
        "# HELP type_and_unit_test2 Type specified in label.\n"
        'type_and_unit_test2{__type__="counter"} 123\n',
        [
            s("prometheus_http_request_duration_seconds_bucket", 423, handler="/", le="1"),
            s("prometheus_http_request_duration_seconds_bucket", 1423, handler="/", le="2"),
            s("prometheus_http_request_duration_seconds_bucket", 1423, handler="/", le="+Inf"),
            s("prometheus_http_request_duration_seconds_sum", 2000, handler="/"),
            s("prometheus_http_request_duration_seconds_count", 1423, handler="/"),
            # No comma between label pairs: parseLVals accepts it (its comment says so).
            s("go_gc_duration_seconds", 8.3835e-05, quantile="2.0", a="b"),
            s("some_counter_total", 12),
            s("testmetric", 1, le="10"),
            # With type-and-unit labels off (the default) __type__ is an ordinary label.
            s("type_and_unit_test1", 123, __type__="counter"),
            s("type_and_unit_test2", 123, __type__="counter"),
        ],
        {
            "prometheus_http_request_duration_seconds": (
                "histogram",
                "Histogram of latencies for HTTP requests.",
            ),
            "some_counter_total": ("counter", "Help after type."),
            "nohelp3": ("untyped", ""),
        },
        # Prometheus 3 rewrites a histogram's le / a summary's quantile to canonical float text
        # (le="1" -> "1.0", normalizeFloatsInLabelValues); v2.42.0 keeps the text, and so do we.
    ),
    Case(
        "promparse-nul-in-help-and-label-value",
        f"{PROMPARSE} TestPromParse (the NUL lines)",
        '# HELP metric foo\x00bar\nnull_byte_metric{a="abc\x00"} 1',
        [s("null_byte_metric", 1, a="abc\x00")],
        {"metric": ("untyped", "foo\x00bar")},
    ),
    # --- promparse_test.go TestPromParseErrors (v2.42.0 and the rows added since).
    *[
        Case(f"promparse-error-{n}", f"{PROMPARSE_HEAD} TestPromParseErrors row {n}", page, REJECT)
        for n, page in enumerate(
            [
                "a",
                "a{b='c'} 1\n",
                "a{b=\n",
                b'a{\xff="foo"} 1\n',
                b'a{b="\xff"} 1\n',
                '{"a", "b = "c"}',
                '{"a",b\\nc="d"} 1',
                "a true\n",
                'something_weird{problem="',
                'empty_label_name{=""} 0',
                "{A}0",
                "foo 1_2\n",
                "foo 0x1p-3\n",
                "foo 0x1P-3\n",
                "foo 0 1_2\n",
                '{a="ok"} 1',
                "# TYPE #\n#EOF\n",
                "# HELP #\n#EOF\n",
            ]
        )
    ],
    Case(
        "promparse-bare-identifier-in-braces",
        f"{PROMPARSE_HEAD} TestPromParseBareIdentifierInBraces",
        "{A} 0\n",
        REJECT,
    ),
    # --- promparse_test.go TestPromNullByteHandling.
    Case(
        "nul-0",
        f"{PROMPARSE} TestPromNullByteHandling row 0",
        'null_byte_metric{a="abc\x00"} 1',
        [s("null_byte_metric", 1, a="abc\x00")],
    ),
    Case(
        "nul-1", f"{PROMPARSE} TestPromNullByteHandling row 1", 'a{b="\x00ss"} 1\n', [s("a", 1, b="\x00ss")]
    ),
    Case("nul-2", f"{PROMPARSE} TestPromNullByteHandling row 2", 'a{b="\x00"} 1\n', [s("a", 1, b="\x00")]),
    Case("nul-4", f"{PROMPARSE} TestPromNullByteHandling row 4", 'a{b=\x00"ssss"} 1\n', REJECT),
    Case("nul-5", f"{PROMPARSE} TestPromNullByteHandling row 5", 'a{b="\x00', REJECT),
    Case("nul-6", f"{PROMPARSE} TestPromNullByteHandling row 6", 'a{b\x00="hiih"}\t1', REJECT),
    Case("nul-7", f"{PROMPARSE} TestPromNullByteHandling row 7", 'a\x00{b="ddd"} 1', REJECT),
    Case("nul-8", f"{PROMPARSE} TestPromNullByteHandling row 8", "a 0 1\x00", REJECT),
    Case(
        "nul-ends-the-page",
        f"{PROMLEX} (`\\0 return tEOF` where a line starts; consumeComment returns tEOF at a NUL)",
        "a 1\n\x00b 2\nc 3\n# x\x00\n",
        [s("a", 1)],
    ),
    Case("nul-in-comment-ends-the-page", f"{PROMLEX} consumeComment", "a 1\n# c\x00d\nb 2\n", [s("a", 1)]),
    # --- issue 17: pages Prometheus accepts that the parser refused.
    Case("issue17-bare-help", ISSUE, "# HELP\nm 1\n", [s("m", 1)]),
    Case("issue17-bare-type", ISSUE, "# TYPE\nm 1\n", [s("m", 1)]),
    Case(
        "issue17-second-help-last-wins",
        f"{ISSUE}; {COMMON} testTextParseError row 12 (TextParser refuses it)",
        "# HELP m one\n# HELP m two\nm 1\n",
        [s("m", 1)],
        {"m": ("untyped", "two")},
    ),
    Case(
        "issue17-second-type-last-wins",
        f"{ISSUE}; {COMMON} testTextParseError row 13 (TextParser refuses it)",
        "# TYPE m counter\n# TYPE m gauge\nm 1\n",
        [s("m", 1)],
        {"m": ("gauge", None)},
    ),
    Case(
        "issue17-type-after-samples",
        f"{ISSUE}; {COMMON} testTextParseError row 14 (TextParser refuses it)",
        "m 4.12\n# TYPE m counter\n",
        [s("m", 4.12)],
        {"m": ("counter", None)},
    ),
    Case(
        "issue17-bucket-without-le",
        ISSUE,
        '# TYPE h histogram\nh_bucket 1\nh_bucket{le="+Inf"} 2\nh_count 2\n',
        [s("h_bucket", 1), s("h_bucket", 2, le="+Inf"), s("h_count", 2)],
        {"h": ("histogram", None)},
    ),
    Case(
        "issue17-bare-sample-in-histogram",
        ISSUE,
        '# TYPE x histogram\nx 3\nx_bucket{le="+Inf"} 1\n',
        [s("x", 3), s("x_bucket", 1, le="+Inf")],
        {"x": ("histogram", None)},
    ),
    Case(
        "issue17-summary-without-quantile",
        ISSUE,
        "# TYPE s summary\ns 1\ns_sum 2\n",
        [s("s", 1), s("s_sum", 2)],
    ),
    Case(
        "issue17-hash-type-no-blank",
        ISSUE,
        "#TYPE a bogus\n#HELP a text\na 1\n",
        [s("a", 1)],
        {"a": ("untyped", None)},
    ),
    Case(
        "issue17-tab-before-timestamp",
        f"{CLIENT_PY} test_timestamps",
        '# TYPE a counter\n# HELP a help\na{foo="bar"} 1\t000\n',
        [s("a", 1, 0, foo="bar")],
    ),
    # --- issue 17: what the parser accepted and Prometheus refuses.
    Case("issue17-negative-timestamp", f"{ISSUE}: promlex.l <sTimestamp>{{D}}+", "m 1 -5\n", REJECT),
    Case("issue17-plus-timestamp", f"{ISSUE}: promlex.l <sTimestamp>{{D}}+", "m 1 +5\n", REJECT),
    Case(
        "issue17-timestamp-beyond-int64",
        f"{ISSUE}: ParseInt(.., 10, 64)",
        "m 1 9223372036854775808\n",
        REJECT,
    ),
    Case(
        "issue17-int64-max-timestamp",
        f"{ISSUE}: ParseInt(.., 10, 64)",
        "m 1 9223372036854775807\n",
        [s("m", 1, 2**63 - 1)],
    ),
    Case("issue17-1e400", f"{ISSUE}: strconv.ParseFloat ErrRange", "m 1e400\n", REJECT),
    Case("issue17-arabic-indic-digit", f"{ISSUE}: ParseFloat reads ASCII", "a \u0661\n", REJECT),
    Case("issue17-arabic-indic-timestamp", f"{ISSUE}: promlex.l {{D}} is [0-9]", "a 1 \u0661\n", REJECT),
    Case("go-float-signed-nan", f"{PROMPARSE} parseFloat (ParseFloat has no signed NaN)", "m -nan\n", REJECT),
    Case(
        "go-float-underflow-is-zero",
        f"{PROMPARSE} parseFloat (ParseFloat rounds 1e-400 to 0)",
        "m 1e-400\n",
        [s("m", 0.0)],
    ),
    Case(
        "go-float-spellings",
        f"{PROMPARSE} parseFloat (ParseFloat's inf/infinity/nan, any case)",
        "a inf\nb -Infinity\nc nAn\nd +INF\ne .5\nf 5.\ng 1E3\n",
        [
            s("a", math.inf),
            s("b", -math.inf),
            s("c", NAN),
            s("d", math.inf),
            s("e", 0.5),
            s("f", 5.0),
            s("g", 1000.0),
        ],
    ),
    Case(
        "quoted-utf8-name",
        f"{CLIENT_PY} test_utf8_counter; {PROMPARSE_HEAD} TestUTF8PromParse",
        '# TYPE "a.b" counter\n# HELP "a.b" help\n{"a.b"} 1\n',
        REJECT,
        ours="Prometheus 3 reads quoted UTF-8 names; text 0.0.4 (and v2.42.0) has none. We ask for "
        "underscore escaping (collectors.scrape_http.ACCEPT), so such a page is a server fault.",
    ),
    Case(
        "quoted-utf8-complex-name",
        f"{CLIENT_PY} test_complex_name_counter",
        '{"my.counter{} # = \\" \\n"} 1\n',
        REJECT,
    ),
    # --- client_python tests/test_parser.py (verdicts are Prometheus').
    Case(
        "cp-simple-counter",
        f"{CLIENT_PY} test_simple_counter",
        "# TYPE a counter\n# HELP a help\na 1\n",
        [s("a", 1)],
        {"a": ("counter", "help")},
    ),
    Case(
        "cp-simple-gauge",
        f"{CLIENT_PY} test_simple_gauge",
        "# TYPE a gauge\n# HELP a help\na 1\n",
        [s("a", 1)],
        {"a": ("gauge", "help")},
    ),
    Case(
        "cp-simple-summary",
        f"{CLIENT_PY} test_simple_summary",
        "# TYPE a summary\n# HELP a help\na_count 1\na_sum 2\n",
        [s("a_count", 1), s("a_sum", 2)],
        {"a": ("summary", "help")},
    ),
    Case(
        "cp-summary-quantiles",
        f"{CLIENT_PY} test_summary_quantiles",
        '# TYPE a summary\n# HELP a help\na_count 1\na_sum 2\na{quantile="0.5"} 0.7\n',
        [s("a_count", 1), s("a_sum", 2), s("a", 0.7, quantile="0.5")],
    ),
    Case(
        "cp-simple-histogram",
        f"{CLIENT_PY} test_simple_histogram",
        '# TYPE a histogram\n# HELP a help\na_bucket{le="1"} 0\na_bucket{le="+Inf"} 3\na_count 3\na_sum 2\n',
        [s("a_bucket", 0, le="1"), s("a_bucket", 3, le="+Inf"), s("a_count", 3), s("a_sum", 2)],
        {"a": ("histogram", "help")},
    ),
    Case("cp-no-metadata", f"{CLIENT_PY} test_no_metadata", "a 1\n", [s("a", 1)], {"a": ("untyped", None)}),
    Case(
        "cp-untyped",
        f"{CLIENT_PY} test_untyped",
        "# HELP redis_connected_clients Redis connected clients\n# TYPE redis_connected_clients untyped\n"
        'redis_connected_clients{instance="rough-snowflake-web",port="6380"} 10.0\n'
        'redis_connected_clients{instance="rough-snowflake-web",port="6381"} 12.0\n',
        [
            s("redis_connected_clients", 10, instance="rough-snowflake-web", port="6380"),
            s("redis_connected_clients", 12, instance="rough-snowflake-web", port="6381"),
        ],
        {"redis_connected_clients": ("untyped", "Redis connected clients")},
    ),
    Case(
        "cp-type-help-switched",
        f"{CLIENT_PY} test_type_help_switched",
        "# HELP a help\n# TYPE a counter\na 1\n",
        [s("a", 1)],
        {"a": ("counter", "help")},
    ),
    Case(
        "cp-blank-lines-and-comments",
        f"{CLIENT_PY} test_blank_lines_and_comments",
        "\n# TYPE a counter\n# FOO a\n# BAR b\n# HELP a help\n\na 1\n",
        [s("a", 1)],
        {"a": ("counter", "help")},
    ),
    Case(
        "cp-comments-not-validated",
        f"{CLIENT_PY} test_comments_parts_are_not_validated_against_legacy_metric_name",
        "\n# A simple. comment line where third token cannot be matched\n# 3565 12345/4436467 another\n",
        [],
    ),
    Case(
        "cp-extra-whitespace",
        f"{CLIENT_PY} test_extra_whitespace (prometheus_client accepts it)",
        "# TYPE  a  counter\n# HELP  a  help\na  1\n",
        # promparse.go keeps the text after the name but its first character: type " counter".
        REJECT,
    ),
    Case(
        "cp-extra-whitespace-help",
        f"{CLIENT_PY} test_extra_whitespace (the HELP line)",
        "# HELP  a  help\na  1\n",
        [s("a", 1)],
        {"a": ("untyped", " help")},
    ),
    Case(
        "cp-tabs",
        f"{CLIENT_PY} test_tabs",
        "#\tTYPE\ta\tcounter\n#\tHELP\ta\thelp\na\t1\n",
        [s("a", 1)],
        {"a": ("counter", "help")},
    ),
    Case(
        "cp-labels-with-curly-braces",
        f"{CLIENT_PY} test_labels_with_curly_braces",
        '# TYPE a counter\na{foo="bar", bar="b{a}z"} 1\n',
        [s("a", 1, foo="bar", bar="b{a}z")],
    ),
    Case(
        "cp-empty-help",
        f"{CLIENT_PY} test_empty_help",
        "# TYPE a counter\n# HELP a\na 1\n",
        [s("a", 1)],
        {"a": ("counter", "")},
    ),
    Case(
        "cp-labels-and-infinite",
        f"{CLIENT_PY} test_labels_and_infinite",
        'a{foo="bar"} +Inf\na{foo="baz"} -Inf\n',
        [s("a", math.inf, foo="bar"), s("a", -math.inf, foo="baz")],
    ),
    Case(
        "cp-spaces",
        f"{CLIENT_PY} test_spaces",
        'a{ foo = "bar" } 1\na\t\t{\t\tfoo\t\t=\t\t"baz"\t\t}\t\t2\na   {    foo   =  "buz"   }    3\n'
        'a\t {  \t foo\t = "biz"\t  } \t 4\na \t{\t foo   = "boz"\t}\t 5\na{foo="bez"}6\n',
        [
            s("a", v, foo=f)
            for v, f in [(1, "bar"), (2, "baz"), (3, "buz"), (4, "biz"), (5, "boz"), (6, "bez")]
        ],
    ),
    Case(
        "cp-commas-trailing",
        f"{CLIENT_PY} test_commas (a)",
        'a{foo="bar",} 1\na{foo="baz",  } 1\n',
        [s("a", 1, foo="bar"), s("a", 1, foo="baz")],
    ),
    # parseLVals wants a label name after `{`: a lone comma fails the scrape (prometheus_client reads it).
    Case("cp-commas-lone", f"{CLIENT_PY} test_commas (b)", "b{,} 2\n", REJECT),
    Case("cp-commas-lone-blank-before", f"{CLIENT_PY} test_commas (c)", "c{  ,} 3\n", REJECT),
    Case("cp-commas-lone-blank-after", f"{CLIENT_PY} test_commas (d)", "d{,  } 4\n", REJECT),
    Case(
        "cp-multiple-trailing-commas",
        f"{CLIENT_PY} test_multiple_trailing_commas",
        'a{foo="bar",, } 1\n',
        REJECT,
    ),
    Case("cp-empty-brackets", f"{CLIENT_PY} test_empty_brackets", "a{} 1\n", [s("a", 1)]),
    Case("cp-nan", f"{CLIENT_PY} test_nan", "a NaN\n", [s("a", NAN)]),
    Case(
        "cp-empty-label",
        f"{CLIENT_PY} test_empty_label",
        'a{foo="bar"} 1\na{foo=""} 2\n',
        [s("a", 1, foo="bar"), s("a", 2, foo="")],
    ),
    *[
        Case(
            f"cp-label-escaping-{n}",
            f"{CLIENT_PY} test_label_escaping row {n}",
            f'a{{foo="{written}",bar="baz"}} 1\n',
            [s("a", 1, foo=value, bar="baz")],
        )
        for n, (written, value) in enumerate(
            [
                ("foo", "foo"),
                ("\\foo", "\\foo"),
                ("\\\\foo", "\\foo"),
                ("foo\\\\", "foo\\"),
                ("\\\\", "\\"),
                ("\\n", "\n"),
                ("\\\\n", "\\n"),
                ("\\\\\\n", "\\\n"),
                ('\\"', '"'),
                ('\\\\\\"', '\\"'),
            ]
        )
    ],
    *[
        Case(
            f"cp-help-escaping-{n}",
            f"{CLIENT_PY} test_help_escaping row {n}",
            f'# HELP a {written}\na{{foo="bar"}} 1\n',
            [s("a", 1, foo="bar")],
            {"a": ("untyped", value)},
        )
        for n, (written, value) in enumerate(
            [
                ("foo", "foo"),
                ("\\foo", "\\foo"),
                ("\\\\foo", "\\foo"),
                ("foo\\", "foo\\"),
                ("foo\\\\", "foo\\"),
                ("\\n", "\n"),
                ("\\\\n", "\\n"),
                ("\\\\\\n", "\\\n"),
                ('\\"', '\\"'),
                ('\\\\"', '\\"'),
                ('\\\\\\"', '\\\\"'),
            ]
        )
    ],
    Case(
        "cp-escaping",
        f"{CLIENT_PY} test_escaping",
        '# TYPE a counter\n# HELP a he\\n\\\\l\\tp\na{foo="b\\"a\\nr"} 1\na{foo="b\\\\a\\z"} 2\n',
        [s("a", 1, foo='b"a\nr'), s("a", 2, foo="b\\a\\z")],
        {"a": ("counter", "he\n\\l\\tp")},
    ),
    Case(
        "cp-timestamps",
        f"{CLIENT_PY} test_timestamps",
        '# TYPE a counter\na{foo="bar"} 1\t000\n# TYPE b counter\nb 2  1234567890\nb 88   1234566000   \n',
        # One series, two explicit timestamps: two samples (Prometheus >= 2.54, #14685).
        [s("a", 1, 0, foo="bar"), s("b", 2, 1234567890), s("b", 88, 1234566000)],
    ),
    Case(
        "cp-roundtrip-legacy-names",
        f"{CLIENT_PY} test_roundtrip (its legacy-named families)",
        '# TYPE go_gc_duration_seconds summary\ngo_gc_duration_seconds{quantile="0"} 0.013300656000000001\n'
        "go_gc_duration_seconds_sum 56.12904785\ngo_gc_duration_seconds_count 7476.0\n"
        '# TYPE p summary\np{quantile="0.5"} NaN\n'
        "process_virtual_memory_bytes 2.478268416e+09\n"
        'prometheus_build_info{branch="HEAD",revision="ef176e5",version="0.16.0rc1"} 1.0\n',
        [
            s("go_gc_duration_seconds", 0.013300656000000001, quantile="0"),
            s("go_gc_duration_seconds_sum", 56.12904785),
            s("go_gc_duration_seconds_count", 7476),
            s("p", NAN, quantile="0.5"),
            s("process_virtual_memory_bytes", 2.478268416e09),
            s("prometheus_build_info", 1, branch="HEAD", revision="ef176e5", version="0.16.0rc1"),
        ],
    ),
    Case(
        "cp-roundtrip-utf8-family",
        f"{CLIENT_PY} test_roundtrip (its UTF-8 family)",
        '{"my.utf8.metric.#{}=",quantile="0"} 0.01\n',
        REJECT,
    ),
    # --- prometheus/common expfmt/text_parse_test.go (verdicts are Prometheus').
    Case("common-parse-0-empty", f"{COMMON} testTextParse 0", "\n\n", []),
    Case(
        "common-parse-1-minimal",
        f"{COMMON} testTextParse 1",
        "\nminimal_metric 1.234\nanother_metric -3e3 103948\n# Even that:\n"
        "no_labels{} 3\n# HELP line for non-existing metric will be ignored.\n",
        [s("minimal_metric", 1.234), s("another_metric", -3000, 103948), s("no_labels", 3)],
    ),
    Case(
        "common-parse-2-whitespace-escapes",
        f"{COMMON} testTextParse 2",
        "\n# A normal comment.\n#\n# TYPE name counter\n"
        'name{labelname="val1",basename="basevalue"} NaN\n'
        'name {labelname="val2",basename="base\\"v\\\\al\\nue"} 0.23 1234567890\n'
        "# HELP name two-line\\n doc  str\\\\ing\n\n"
        ' # HELP  name2  \tdoc str"ing 2\n'
        "  #    TYPE    name2 gauge\n"
        'name2{labelname="val2"\t,basename   =   "basevalue2"\t\t} +Inf 54321\n'
        'name2{ labelname = "val1" , }-Inf\n',
        [
            s("name", NAN, labelname="val1", basename="basevalue"),
            s("name", 0.23, 1234567890, labelname="val2", basename='base"v\\al\nue'),
            s("name2", math.inf, 54321, labelname="val2", basename="basevalue2"),
            s("name2", -math.inf, labelname="val1"),
        ],
        # The HELP text after `name2` keeps all but its first blank (TextParser trims them all).
        {"name": ("counter", "two-line\n doc  str\\ing"), "name2": ("gauge", ' \tdoc str"ing 2')},
    ),
    Case(
        "common-parse-3-evil-summary",
        f"{COMMON} testTextParse 3 (TextParser reads `decoy -1 -2`)",
        '\n# TYPE my_summary summary\nmy_summary{n1="val1",quantile="0.5"} 110\ndecoy -1 -2\n',
        REJECT,  # a negative timestamp: promlex.l's {D}+ has no sign
    ),
    Case(
        "common-parse-3-evil-summary-rest",
        f"{COMMON} testTextParse 3 (without the decoy line)",
        '# TYPE my_summary summary\nmy_summary{n1="val1",quantile="0.5"} 110\n'
        'my_summary{n1="val1",quantile="0.9"} 140 1\nmy_summary_count{n1="val1"} 42\n'
        "# Latest timestamp wins in case of a summary.\n"
        'my_summary_sum{n1="val1"} 4711 2\nfake_sum{n1="val1"} 2001\n'
        '# TYPE another_summary summary\nanother_summary_count{n2="val2",n1="val1"} 20\n'
        'my_summary_count{n2="val2",n1="val1"} 5 5\nanother_summary{n1="val1",n2="val2",quantile=".3"} -1.2\n'
        'my_summary_sum{n1="val2"} 08 15\nmy_summary{n1="val3", quantile="0.2"} 4711\n'
        '  my_summary{n1="val1",n2="val2",quantile="-12.34",} NaN\n'
        "# some\n# funny comments\n# HELP\n# HELP\n# HELP my_summary\n# HELP my_summary\n",
        [
            s("my_summary", 110, n1="val1", quantile="0.5"),
            s("my_summary", 140, 1, n1="val1", quantile="0.9"),
            s("my_summary_count", 42, n1="val1"),
            s("my_summary_sum", 4711, 2, n1="val1"),
            s("fake_sum", 2001, n1="val1"),
            s("another_summary_count", 20, n2="val2", n1="val1"),
            s("my_summary_count", 5, 5, n2="val2", n1="val1"),
            s("another_summary", -1.2, n1="val1", n2="val2", quantile=".3"),
            s("my_summary_sum", 8, 15, n1="val2"),
            s("my_summary", 4711, n1="val3", quantile="0.2"),
            s("my_summary", NAN, n1="val1", n2="val2", quantile="-12.34"),
        ],
        {"my_summary": ("summary", ""), "another_summary": ("summary", None)},
    ),
    Case(
        "common-parse-4-histogram",
        f"{COMMON} testTextParse 4",
        "# HELP request_duration_microseconds The response latency.\n"
        "# TYPE request_duration_microseconds histogram\n"
        'request_duration_microseconds_bucket{le="100"} 123\n'
        'request_duration_microseconds_bucket{le="172.8"} 1524\n'
        'request_duration_microseconds_bucket{le="+Inf"} 2693\n'
        "request_duration_microseconds_sum 1.7560473e+06\n"
        "request_duration_microseconds_count 2693\n",
        [
            s("request_duration_microseconds_bucket", 123, le="100"),
            s("request_duration_microseconds_bucket", 1524, le="172.8"),
            s("request_duration_microseconds_bucket", 2693, le="+Inf"),
            s("request_duration_microseconds_sum", 1.7560473e06),
            s("request_duration_microseconds_count", 2693),
        ],
        {"request_duration_microseconds": ("histogram", "The response latency.")},
    ),
    Case(
        "common-parse-5-quoted-names",
        f"{COMMON} testTextParse 5-8 (quoted names)",
        '{"my.noncompliant.metric","label.name"="value"} 1\n',
        REJECT,
    ),
    Case(
        "common-error-0-no-final-newline",
        f"{COMMON} testTextParseError 0 (promparse appends one)",
        "\nbla 3.14\nblubber 42",
        [s("bla", 3.14), s("blubber", 42)],
    ),
    Case(
        "common-error-1-backslash-t",
        f"{COMMON} testTextParseError 1 (lvalReplacer keeps \\t)",
        'metric{label="\\t"} 3.14',
        [s("metric", 3.14, label="\\t")],
    ),
    Case(
        "common-error-2-newline-in-label-value",
        f"{COMMON} testTextParseError 2",
        '\nmetric{label="new\nline"} 3.14\n',
        REJECT,
        ours="promlex.l's label value [^\\\\\"]* spans a raw newline, so Prometheus reads this page; we "
        "read a page line by line and refuse it (no exporter writes one: the format escapes newlines).",
    ),
    *[
        Case(f"common-error-{n}", f"{COMMON} testTextParseError {n}", page, REJECT)
        for n, page in [
            (3, 'metric{@="bla"} 3.14'),
            (4, 'metric{__name__="bla"} 3.14'),  # a second __name__: the TSDB refuses the series
            (5, 'metric{label+="bla"} 3.14'),
            (6, "metric{label=bla} 3.14"),
            (8, 'metric{label="bla"+} 3.14'),
            (9, 'metric{label="bla"} 3.14 2.72\n'),
            (10, 'metric{label="bla"} 3.14 2 3\n'),
            (11, 'metric{label="bla"} blubb\n'),
            (15, "\n# TYPE metric bla\n"),
            (16, "\n# TYPE met-ric\n"),  # name `met`, type "ric"
            (17, '@invalidmetric{label="bla"} 3.14 2'),
            (18, '{label="bla"} 3.14 2'),
            (20, b'metric{l="\xbd"} 3.14\n'),
            (21, "foo 1_2\n"),
            (22, "foo 0x1p-3\n"),
            (23, "foo 0x1P-3\n"),
            (24, "foo 0B1\n"),
            (25, "foo 0O1\n"),
            (26, "foo 0X1\n"),
            (27, "foo 0x1\n"),
            (28, "foo 0b1\n"),
            (29, "foo 0o1\n"),
            (34, 'metric{label="bla",label="bla"} 3.14'),  # the TSDB refuses a repeated label name
            (35, '{"one.name","another.name"} 3.14'),
            (36, b'{"a\xc5z",label="bla"} 3.14'),
            (37, '{"metric.name".label="bla"} 3.14'),
            (41, '{"metric.name",foo="bla"} 3.14\n'),
            (42, 'metric_name{"foo"="bar", "dotted.label"="bla"} 3.14\n'),
            (47, "{} 3.14"),
        ]
    ],
    # TextParser checks what promparse leaves to PromQL: le/quantile values, negative histogram counts.
    Case(
        "common-error-7-quantile-not-a-float",
        f"{COMMON} testTextParseError 7",
        '\n# TYPE metric summary\nmetric{quantile="bla"} 3.14\n',
        [s("metric", 3.14, quantile="bla")],
    ),
    Case(
        "common-error-19-le-not-a-float",
        f"{COMMON} testTextParseError 19",
        '\n# TYPE metric histogram\nmetric_bucket{le="bla"} 3.14\n',
        [s("metric_bucket", 3.14, le="bla")],
    ),
    Case(
        "common-error-32-le-hex",
        f"{COMMON} testTextParseError 32",
        '# TYPE metric histogram\nmetric_bucket{le="0x1p-3"} 3.14\n',
        [s("metric_bucket", 3.14, le="0x1p-3")],
    ),
    Case(
        "common-error-33-quantile-hex",
        f"{COMMON} testTextParseError 33",
        '# TYPE metric summary\nmetric{quantile="0x1p-3"} 3.14\n',
        [s("metric", 3.14, quantile="0x1p-3")],
    ),
    Case(
        "common-error-43-negative-histogram-count",
        f"{COMMON} testTextParseError 43-46",
        '# TYPE r histogram\nr_bucket{le="100"} 123\n'
        'r_bucket{le="120"} -412.456\nr_bucket{le="+Inf"} 2693\nr_count -2693\n',
        [
            s("r_bucket", 123, le="100"),
            s("r_bucket", -412.456, le="120"),
            s("r_bucket", 2693, le="+Inf"),
            s("r_count", -2693),
        ],
    ),
    # --- promlex.l: what its tokens allow beyond the upstream tests.
    Case(
        "lex-value-right-after-name",
        f"{PROMLEX} (<sValue>[^{{ \\t\\n]+ right after the name)",
        "m+1\nn-2\n",
        [s("m", 1), s("n", -2)],
    ),
    Case(
        "lex-type-is-exact", f"{PROMLEX}; promparse.go Next (switch on the text)", "# TYPE m GAUGE\n", REJECT
    ),
    Case("lex-type-two-blanks", f"{PROMLEX}; promparse.go Next (text[1:])", "# TYPE m  gauge\n", REJECT),
    Case("lex-help-without-name-trailing-blank", f"{PROMLEX} (sMeta1 wants a name)", "# HELP \n", REJECT),
    Case("lex-hash-word-prefix", f"{PROMLEX} (HELP[\\t ]+)", "# HELPx m 1\n# TYPEm counter\n", []),
    Case(
        "lex-crlf",
        f"{PROMLEX} (\\r is not a blank: `1\\r` is not a float)",
        "# TYPE m gauge\r\nm 1\r\n",
        [s("m", 1)],
        {"m": ("gauge", None)},
        ours="Prometheus refuses a CRLF page (the value token ends in \\r); we drop one CR before each "
        "line feed, as prometheus_client does, since Windows exporters write them.",
    ),
    Case(
        "lex-invalid-utf8-in-comment",
        f"{PROMPARSE} (a comment's bytes are not checked)",
        b"# caf\xe9\nm 1\n",
        [s("m", 1)],
    ),
    Case(
        "lex-invalid-utf8-in-help",
        f"{PROMPARSE} Next (help text is not a valid utf8 string)",
        b"# HELP m caf\xe9\nm 1\n",
        REJECT,
    ),
]


def outcome(page: str | bytes) -> tuple[list[tuple] | None, dict[str, tuple[str, str | None]]]:
    try:
        families = ExpositionParser().parse(page)
    except ExpositionError:
        return REJECT, {}
    samples = [
        (x.name, dict(x.labels), x.value, x.timestamp_ms) for f in families.values() for x in f.samples
    ]
    return samples, {name: (f.type, f.help) for name, f in families.items()}


def comparable(samples: list[tuple]) -> list[tuple]:
    return sorted(
        (name, sorted(labels.items()), "NaN" if math.isnan(value) else value, -1 if ts is None else ts)
        for name, labels, value, ts in samples
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_prometheus_verdict_and_values(case: Case) -> None:
    samples, meta = outcome(case.page)
    if case.samples is REJECT:
        assert samples is REJECT, f"{case.source}: Prometheus fails this scrape; we read {samples}"
        return
    assert samples is not REJECT, f"{case.source}: Prometheus reads this page; we refused it"
    assert comparable(samples) == comparable(case.samples)
    for name, expected in case.meta.items():
        assert meta[name] == expected, name


def test_case_ids_are_unique_and_cite_an_upstream_source() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
    assert all("@" in c.source or c.source.startswith("issue 17") for c in CASES)


def test_every_deliberate_difference_is_in_the_docs_table() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "parser.md").read_text()
    for case in CASES:
        if case.ours:
            assert f"`{case.id}`" in doc, case.id


# --- model/textparse/testdata: real /metrics pages of a Go program (Prometheus' own), with and without
# HELP/TYPE lines. Their behaviours, written here as one page in their style: summaries with NaN
# quantiles, histograms with exponent bounds and +Inf, `_total` counters, an info gauge, label values
# with blanks, `;`, `/` and `:`, help text with quotes and a backslash, untyped samples (the nometa page).
TESTDATA = f"prometheus/prometheus model/textparse/testdata@{PROMPARSE_HEAD.rsplit('@', 1)[1]}"
GO_STYLE_PAGE = (
    "# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration.\n"
    "# TYPE go_gc_duration_seconds summary\n"
    'go_gc_duration_seconds{quantile="0"} 1.9216e-05\n'
    'go_gc_duration_seconds{quantile="0.5"} NaN\n'
    'go_gc_duration_seconds{quantile="1"} 0.000276537\n'
    "go_gc_duration_seconds_sum 0.005244815\ngo_gc_duration_seconds_count 18\n"
    "# HELP go_gc_heap_allocs_by_size_bytes Distribution of heap allocations by approximate size.\n"
    "# TYPE go_gc_heap_allocs_by_size_bytes histogram\n"
    'go_gc_heap_allocs_by_size_bytes_bucket{le="8.999999999999998"} 13883\n'
    'go_gc_heap_allocs_by_size_bytes_bucket{le="6.103515625e-05"} 13883\n'
    'go_gc_heap_allocs_by_size_bytes_bucket{le="+Inf"} 105234\n'
    "go_gc_heap_allocs_by_size_bytes_sum 1.3412344e+07\ngo_gc_heap_allocs_by_size_bytes_count 105234\n"
    "# HELP go_info Information about the Go environment.\n# TYPE go_info gauge\n"
    'go_info{version="go1.22.3"} 1\n'
    '# HELP prometheus_rule_evaluations_total The total number of rule evaluations ("quoted", C:\\\\dir).\n'
    "# TYPE prometheus_rule_evaluations_total counter\n"
    'prometheus_rule_evaluations_total{rule_group="/etc/prometheus/rules/a.rules;ansible managed alert'
    ' rules"} 118092\n'
    'prometheus_http_requests_total{code="200",handler="/api/v1/query_range"} 2.3556e+06\n'
    "process_max_fds 1.048576e+06\n"
)


def nometa(page: str) -> str:
    return "".join(line + "\n" for line in page.splitlines() if not line.startswith("#"))


def prometheus_client_samples(page: str) -> list[tuple]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (x.name, dict(x.labels), x.value, None if x.timestamp is None else round(x.timestamp * 1000))
        for family in text_string_to_metric_families(page)
        for x in family.samples
    ]


@pytest.mark.parametrize(
    "page", [GO_STYLE_PAGE, nometa(GO_STYLE_PAGE)], ids=["testdata-style", "testdata-nometa"]
)
def test_testdata_style_pages_read_as_prometheus_client_reads_them(page: str) -> None:
    """The testdata pages hold no case where promparse and prometheus_client disagree: compare the two."""
    samples, meta = outcome(page)
    assert samples is not REJECT, TESTDATA
    assert comparable(samples) == comparable(prometheus_client_samples(page))
    assert len(samples) == 14  # 5 summary + 5 histogram + 4 single samples, counted by hand
    if page.startswith("#"):
        assert meta["go_gc_heap_allocs_by_size_bytes"][0] == "histogram"
        assert (
            meta["prometheus_rule_evaluations_total"][1]
            == 'The total number of rule evaluations ("quoted", C:\\dir).'
        )
    else:
        assert {kind for kind, _ in meta.values()} == {"untyped"}


def test_prometheus_testdata_files_when_given() -> None:
    """With PROMETHEUS_TESTDATA=DIR (files fetched from a Prometheus clone; not kept here), each
    *.prom.txt / promtestdata*.txt page there reads as prometheus_client reads it, sample for sample."""
    import os
    from pathlib import Path

    where = os.environ.get("PROMETHEUS_TESTDATA")
    if not where:
        pytest.skip("PROMETHEUS_TESTDATA not set (a directory of model/textparse testdata pages)")
    files = sorted(Path(where).glob("*.prom.txt")) + sorted(Path(where).glob("promtestdata*.txt"))
    assert files, f"no testdata pages in {where}"
    for path in files:
        page = path.read_text()
        samples, _ = outcome(page)
        assert samples is not REJECT, path.name
        assert comparable(samples) == comparable(prometheus_client_samples(page)), path.name
