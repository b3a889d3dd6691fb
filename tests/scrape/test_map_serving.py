"""Inference-server pages -> serving and serving_hist rows, on the golden pages of each engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.mappings import MappingError, ServingRows, add_serving, detect_engine, map_serving
from collectors.promtext import parse
from collectors.series_counters import SeriesCounters
from collectors.serving_math import histogram_quantile
from storage.schemas import SERVING, SERVING_HIST

PAGES = Path(__file__).parent.parent / "data" / "pages"
TS = 1_790_000_000_000


def page(name: str) -> str:
    return (PAGES / name).read_text()


def zeroed(text: str) -> str:
    """The page with every sample value 0: the counters' state before the golden page's increases."""
    return "\n".join(
        line if not line.strip() or line.startswith("#") else line.rpartition(" ")[0] + " 0"
        for line in text.split("\n")
    )


def mapped(text: str, **kwargs) -> tuple[dict, dict[str, list[tuple[float, int]]], dict[str, float | None]]:
    """The rows of the page mapped after a page of zeros from the same endpoint.

    Each counter series goes 0 -> v, so the stored counter (the running total of per-series
    increases) is the sum of the page's series: the figures below are hand sums over the page.
    """
    series = SeriesCounters()
    map_serving(zeroed(text), "ep", TS - 1000, series=series, **kwargs)
    frame = map_serving(text, "ep", TS, series=series, **kwargs)
    assert frame.batches["serving"].schema == SERVING
    (row,) = frame.batches["serving"].to_pylist()
    hist: dict[str, list[tuple[float, int]]] = {}
    sums: dict[str, float | None] = {}
    if "serving_hist" in frame.batches:
        assert frame.batches["serving_hist"].schema == SERVING_HIST
        for r in frame.batches["serving_hist"].to_pylist():
            hist.setdefault(r["metric"], []).append((r["le"], r["count"]))
            if r["sum_s"] is not None:
                sums[r["metric"]] = r["sum_s"]
    return row, hist, sums


def core(row: dict) -> tuple:
    keys = (
        "engine",
        "model",
        "prompt_tokens",
        "generation_tokens",
        "requests_ok",
        "preemptions",
        "running",
        "waiting",
        "kv_cache_q4",
    )
    return tuple(row[k] for k in keys)


@pytest.mark.parametrize(
    ("name", "engine"),
    [
        ("vllm.txt", "vllm"),
        ("vllm_v010.txt", "vllm"),
        ("sglang.txt", "sglang"),
        ("trtllm.txt", "trtllm"),
        ("triton.txt", "triton"),
        ("dynamo.txt", "dynamo"),
        ("dcgm.txt", None),
    ],
)
def test_engine_detection_from_text_and_from_families(name, engine):
    assert detect_engine(page(name)) == engine
    assert detect_engine(parse(page(name))) == engine


def test_vllm_current_names():
    row, hist, sums = mapped(page("vllm.txt"))
    model = "meta-llama/Llama-3.1-70B-Instruct"
    # requests_ok leaves out abort/error; prompt tokens are the plain counter, not _by_source's split.
    assert core(row) == ("vllm", model, 19_004_387, 6_020_117, 16_420 + 3_301, 41, 212, 9, 8_123)
    assert row["endpoint"] == "ep" and row["state"] == 0
    assert [len(hist[m]) for m in ("ttft", "itl", "e2e")] == [23, 20, 12]
    assert sums == {
        "ttft": pytest.approx(5136.97),
        "itl": pytest.approx(174186.4),
        "e2e": pytest.approx(141203.7),
    }
    assert hist["ttft"][-1] == (float("inf"), 20_000)
    p50, p99 = histogram_quantile(0.5, hist["ttft"]), histogram_quantile(0.99, hist["ttft"])
    assert (round(p50, 3), round(p99, 3)) == (0.210, 1.037)


def test_vllm_old_names_and_data_parallel_engines_are_summed():
    row, hist, sums = mapped(page("vllm_v010.txt"))
    assert core(row) == ("vllm", "Qwen/Qwen3-32B", 7_500_000, 2_750_000, None, None, 124, 3, 4_000)
    assert hist == {"itl": [(0.01, 150), (0.025, 1350), (0.05, 1500), (float("inf"), 1500)]}
    assert sums == {"itl": pytest.approx(29.25)}
    only_old = "\n".join(
        line for line in page("vllm_v010.txt").splitlines() if "kv_cache_usage_perc" not in line
    )
    assert mapped(only_old)[0]["kv_cache_q4"] == 4_000


def test_colon_and_underscore_spellings_are_the_same_metric():
    colon = mapped(page("vllm.txt"))
    underscore = mapped(page("vllm.txt").replace("vllm:", "vllm_"))
    assert core(colon[0]) == core(underscore[0]) and colon[1] == underscore[1]


def test_bucket_bounds_are_read_from_the_page():
    custom = page("vllm.txt").replace('le="0.25"', 'le="0.3"')
    _, hist, _ = mapped(custom)
    assert 0.3 in [le for le, _ in hist["ttft"]] and 0.25 not in [le for le, _ in hist["ttft"]]


def test_sglang_dedupes_tensor_parallel_ranks_and_sums_data_parallel_ranks():
    row, hist, sums = mapped(page("sglang.txt"))
    assert core(row) == ("sglang", "Qwen/Qwen3-0.6B", 120_000, 300, 3, None, 22, 5, 5_000)
    assert hist["ttft"] == [(0.1, 0), (0.2, 2), (0.4, 3), (float("inf"), 3)]  # _sum came first on the page
    assert sums["ttft"] == pytest.approx(0.6) and len(hist["itl"]) == 4 and len(hist["e2e"]) == 3


def test_trtllm_serve():
    row, hist, _ = mapped(page("trtllm.txt"))
    assert core(row) == ("trtllm", "nvidia/Llama-3.3-70B-Instruct-FP4", None, None, 990, None, 96, 5, 7_100)
    assert [len(hist[m]) for m in ("ttft", "itl", "e2e")] == [4, 3, 3]


def test_triton_milliseconds_become_seconds():
    row, hist, sums = mapped(page("triton.txt"))
    assert core(row) == ("triton", "ensemble,tensorrt_llm", None, 1_142_400, 8_400, None, 64, 6, 4_375)
    assert hist == {"ttft": [(0.1, 300), (0.5, 4000), (2.0, 4200), (float("inf"), 4200)]}
    assert sums == {"ttft": pytest.approx(840.0)}


def test_dynamo_frontend():
    row, hist, _sums = mapped(page("dynamo.txt"))
    assert core(row) == ("dynamo", "qwen/qwen3-0.6b", 512_000, 598_000, 1_000, None, 32, 8, None)
    assert hist["ttft"][0] == (0.0, 0) and [len(hist[m]) for m in ("ttft", "itl", "e2e")] == [5, 4, 3]
    assert histogram_quantile(0.5, hist["itl"]) == pytest.approx(0.005 * 298_500 / 400_000)


def test_many_endpoints_build_one_frame():
    rows = ServingRows()
    engines = [add_serving(page(n), n, rows) for n in ("vllm.txt", "sglang.txt", "dynamo.txt")]
    frame = rows.frame(TS)
    assert engines == ["vllm", "sglang", "dynamo"]
    assert frame.batches["serving"].column("endpoint").to_pylist() == ["vllm.txt", "sglang.txt", "dynamo.txt"]
    assert frame.batches["serving_hist"].num_rows == 55 + 11 + 12


def test_a_page_of_no_known_engine_is_one_clear_error():
    with pytest.raises(MappingError, match="ep: no vLLM, SGLang"):
        map_serving(page("dcgm.txt"), "ep", TS)
    with pytest.raises(MappingError, match="unknown engine 'tgi'"):
        map_serving(page("vllm.txt"), "ep", TS, engine="tgi")
