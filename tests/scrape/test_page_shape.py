"""A parser kept per endpoint re-reads pages that differ only in values from the last page's shape.

Each case parses a sequence of pages with a parser that keeps shapes and with one that does not (the
line loop only, same caches otherwise): both must give the same families or the same error. The
mapping side: a tray mapper's link layout and a server's per-endpoint parser.
"""

from __future__ import annotations

import math

import pytest

from collectors.mappings import GpuPageMapper, ServingRows, add_serving, frame_to_agent_page, serving_want
from collectors.promtext import ExpositionError, ExpositionParser, Family
from collectors.series_counters import SeriesCounters
from tests.scrape.pagegen import agent_gpus, tray_frame, vllm_page

PAGE = """# HELP up Whether the target is up.
# TYPE up gauge
up{job="a"} 1
up{job="b"} 0
# TYPE lat histogram
lat_bucket{le="0.5"} 3
lat_bucket{le="+Inf"} 5
lat_sum 2.5
lat_count 5
# TYPE noise counter
noise_total{k="1"} 7
noise_total{k="2"} 8
"""


def revalue(text: str, values: dict[int, str]) -> str:
    """The page with the value token of some lines (0-based index) replaced."""
    lines = text.split("\n")
    for index, value in values.items():
        lines[index] = lines[index].rpartition(" ")[0] + " " + value
    return "\n".join(lines)


def outcome(parser: ExpositionParser, text: str, want=None) -> object:
    try:
        families = parser.parse(text, want)
    except ExpositionError as err:
        return ("error", err.line, err.message)
    return [
        (
            f.name,
            f.type,
            f.help,
            [
                (s.name, dict(s.labels), "nan" if math.isnan(s.value) else s.value, s.timestamp_ms)
                for s in f.samples
            ],
        )
        for f in families.values()
    ]


def same_as_line_loop(pages: list[str], want=None) -> list[object]:
    shaped, loop = ExpositionParser(), ExpositionParser(shapes=False)
    results = []
    for text in pages:
        mine = outcome(shaped, text, want)
        assert mine == outcome(loop, text, want)
        results.append(mine)
    return results


def test_new_values_on_the_same_lines_are_read():
    later = revalue(PAGE, {2: "0", 5: "4", 6: "9", 7: "NaN", 10: "+Inf"})
    results = same_as_line_loop([PAGE, PAGE, later, PAGE])
    up = results[2][0][3]
    assert [v for _, _, v, _ in up] == [0.0, 0.0]
    lat = results[2][1][3]
    assert [v for _, _, v, _ in lat] == [4.0, 9.0, "nan", 5.0]
    assert results[3] == results[0]


@pytest.mark.parametrize(
    "value",
    ["x", "1_000", "", "1{", "1 2", "0x10"],
)
def test_a_bad_value_on_a_known_line_is_the_line_loop_error(value):
    pages = [PAGE, PAGE, revalue(PAGE, {6: value})]
    results = same_as_line_loop(pages)
    assert results[2][0] == "error" or value == "1 2"  # `1 2`: a timestamp, parsed as such


def test_a_changed_line_or_comment_falls_back_to_the_line_loop():
    pages = [
        PAGE,
        PAGE,
        PAGE.replace('job="b"', 'job="c"'),
        PAGE.replace("# TYPE noise counter", "# TYPE noise gauge"),
        PAGE + "extra 1\n",
        PAGE.replace("lat_sum 2.5", "lat_sum 2.5 1000"),
        PAGE,
    ]
    results = same_as_line_loop(pages)
    assert [s[1] for s in results[2][0][3]] == [{"job": "a"}, {"job": "c"}]
    assert results[5][1][3][2][3] == 1000


def test_filtered_lines_may_change_value_but_not_name():
    def want(name: str) -> bool:
        return name != "skip_me"

    page = "# TYPE keep gauge\nkeep 1\nskip_me 5\nskip_me 6\n"
    pages = [page, page, revalue(page, {2: "7", 3: "nope"}), revalue(page, {2: "1{"})]
    results = same_as_line_loop(pages, want)
    assert [f[0] for f in results[2]] == ["keep"]
    # `skip_me 1{`: the name is still `skip_me` (promlex.l's name token stops at a blank), a family
    # the filter skips unread, so the line is not checked; both paths agree (same_as_line_loop).
    assert [f[0] for f in results[3]] == ["keep"]


def test_a_line_skipped_by_prefix_is_read_when_it_no_longer_starts_so():
    """A shape skips the lines a filtered name's prefix skipped without reading them; a line there that
    now names another family is read (the line loop would read it)."""

    def want(name: str) -> bool:
        return name != "skip_me"

    page = '# TYPE keep gauge\nkeep 1\nskip_me{a="1"} 5\nskip_me{a="2"} 6\nkeep_too 2\n'
    pages = [page, page, revalue(page, {3: "7"}), page.replace('skip_me{a="2"}', 'other{a="2"}'), page]
    results = same_as_line_loop(pages, want)
    assert [f[0] for f in results[2]] == ["keep", "keep_too"]
    assert [f[0] for f in results[3]] == ["keep", "other", "keep_too"]


def test_each_parse_returns_new_families():
    parser = ExpositionParser()
    first = parser.parse(PAGE)
    parser.parse(PAGE)
    third = parser.parse(PAGE)
    assert third["up"] is not first["up"] and isinstance(third["up"], Family)
    third["up"].samples.clear()
    assert len(parser.parse(PAGE)["up"].samples) == 2


def test_tray_mapper_rows_equal_a_fresh_mapper_over_ticks():
    kept = GpuPageMapper("tray05:9401")
    for tick in range(4):
        text = frame_to_agent_page(tray_frame(5, tick), agent_gpus(5), hostname="tray05")
        rows = {k: b.to_pydict() for k, b in kept.map(text, tick).batches.items() if k != "events"}
        fresh = {k: b.to_pydict() for k, b in GpuPageMapper("tray05:9401").map(text, tick).batches.items()}
        assert rows == fresh
        assert len(rows["nvlink"]["link"]) == 4 * 18


def test_tray_mapper_skips_families_it_never_reads():
    page = frame_to_agent_page(tray_frame(2, 0), agent_gpus(2), hostname="tray02")
    noisy = (
        '# TYPE DCGM_FI_PROF_PIPE_TENSOR_ACTIVE gauge\nDCGM_FI_PROF_PIPE_TENSOR_ACTIVE{gpu="0"} oops\n' + page
    )
    plain = GpuPageMapper("tray02:9401").map(page, 0).batches["gpu"].to_pydict()
    assert GpuPageMapper("tray02:9401").map(noisy, 0).batches["gpu"].to_pydict() == plain


def test_server_rows_with_a_kept_parser_equal_the_shared_parser():
    parser = ExpositionParser()
    kept_series, shared_series = SeriesCounters(), SeriesCounters()
    for tick in range(4):
        text = vllm_page(tick)
        kept, shared = ServingRows(), ServingRows()
        add_serving(text, "vllm-0", kept, engine="vllm", parser=parser, series=kept_series)
        add_serving(text, "vllm-0", shared, engine="vllm", series=shared_series)
        assert (
            kept.frame(tick).batches["serving"].to_pydict()
            == shared.frame(tick).batches["serving"].to_pydict()
        )
        assert (
            kept.frame(tick).batches["serving_hist"].to_pydict()
            == shared.frame(tick).batches["serving_hist"].to_pydict()
        )
    assert (
        parser.parse(text, serving_want("vllm")).keys()
        == ExpositionParser().parse(text, serving_want("vllm")).keys()
    )


def test_siblings_share_caches_but_not_shapes():
    first = ExpositionParser()
    second = first.sibling()
    other = PAGE.replace('job="b"', 'job="z"')
    for _ in range(3):
        assert outcome(first, PAGE) == outcome(ExpositionParser(shapes=False), PAGE)
        assert outcome(second, other) == outcome(ExpositionParser(shapes=False), other)
    assert first._heads is second._heads
    assert first._shape is not None and second._shape is not None and first._shape is not second._shape
