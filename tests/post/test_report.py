"""monitor report: the rack's claim on `steady`, the GPU or tray at fault on `straggler`/`thermal`."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from collectors.rack import GPUS
from collectors.robust import robust_high, robust_low
from collectors.sim.gpu import MAX_SM_MHZ
from collectors.sim.rack import SimRack
from monitor.export import export
from monitor.report import summarize
from monitor.report_charts import PALETTE
from monitor.report_html import render_report
from monitor.timespec import Window
from storage.quantile import bucket_quantile
from storage.reader import StoreReader
from tests.post.conftest import END_S, SEED, monitor, one_line_error
from tests.post.store_fixtures import per_series, raw_rows

SINCE, UNTIL = "2025-06-15T14:00:00Z", "2025-06-15T16:00:00Z"
WINDOW = Window(1_749_996_000_000, 1_750_003_200_000)


def fault_of(scenario: str):
    fault = SimRack(SEED, scenario).scenario.fault
    assert fault is not None
    return fault


def test_steady_rack_serves_its_claim(steady: Path) -> None:
    done = monitor("report", "--store", str(steady), "--since", SINCE, "--until", UNTIL, "--format", "json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    serving = summary["serving"]
    # The workload model: 72 GPUs x 15.5 k tok/s capacity x 0.98 offered load = 1.094 M tok/s.
    assert 1.05e6 < serving["tokens_per_s"] < 1.14e6
    assert 14_500 < serving["per_gpu"]["median"] < 15_800
    assert serving["prompt_tokens_per_s"] > serving["tokens_per_s"]
    assert summary["suspects"] == []
    assert 5 < summary["energy"]["tokens_per_joule"] < 30
    ttft, itl = serving["latency"]["ttft"], serving["latency"]["itl"]
    assert 0.1 < ttft["p50"] < ttft["p90"] < ttft["p99"] < 1.0
    assert 0.01 < itl["p50"] < 0.03 and itl["p99"] < 0.1
    assert 60 < summary["power_kw"]["mean"] < 101  # 72 GPUs under 1.4 kW each


def test_quantiles_match_the_raw_rows(steady: Path) -> None:
    # Independent of the reader: each bucket series' increase over the raw rows (tests' own Prometheus
    # increase), summed over endpoints per bound, then PromQL's interpolation (storage.quantile).
    rows = raw_rows(steady, "serving_hist", WINDOW.since_ms, WINDOW.until_ms)
    with StoreReader(steady) as reader:
        summary = summarize(reader, WINDOW)
    for metric in ("ttft", "itl"):
        increases = per_series([r for r in rows if r["metric"] == metric], ("endpoint", "le"), "count")
        buckets: dict[float, float] = {}
        for (_, le), (inc, _) in increases.items():
            buckets[le] = buckets.get(le, 0.0) + inc
        for q, key in ((0.5, "p50"), (0.99, "p99")):
            exact = bucket_quantile(q, sorted(buckets.items()))
            assert math.isclose(summary["serving"]["latency"][metric][key], exact, rel_tol=1e-9)


def test_straggler_is_named(straggler: Path) -> None:
    fault = fault_of("straggler")
    with StoreReader(straggler) as reader:
        summary = summarize(reader, WINDOW)
    assert [s["gpu"] for s in summary["suspects"]] == [fault.gpu]
    assert summary["serving"]["per_gpu"]["slowest"][0]["gpu"] == fault.gpu


def test_thermal_tray_is_named(thermal: Path) -> None:
    fault = fault_of("thermal")
    done = monitor("report", "--store", str(thermal), "--since", SINCE, "--until", UNTIL, "--format", "md")
    assert done.returncode == 0, done.stderr
    [tray] = [line for line in done.stdout.splitlines() if line.startswith(f"- tray {fault.tray}, onset ")]
    assert ": thermal slowdown on 4 of 4 GPUs" in tray
    assert "## Suspects" in done.stdout and "## Events" in done.stdout


@pytest.mark.parametrize("scenario", ["straggler", "thermal"])
def test_gpu_side_alone_still_finds_the_fault(
    scenario: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store: Path = request.getfixturevalue(scenario)
    fault = fault_of(scenario)
    bundle = tmp_path / "gpu-only"
    export(store, bundle, WINDOW, tables=["gpu", "events"], with_report=False)
    done = monitor("report", "--store", str(bundle), "--since", SINCE, "--until", UNTIL)
    assert done.returncode == 0, done.stderr
    assert "no serving rows in this window" in done.stdout
    with StoreReader(bundle) as reader:
        suspects = summarize(reader, WINDOW)["suspects"]
    if scenario == "straggler":
        assert [(s["kind"], s["gpu"]) for s in suspects] == [("gpu", fault.gpu)]
    else:
        assert [(s["kind"], s["tray"]) for s in suspects] == [("tray", fault.tray)]


def test_text_format(straggler: Path) -> None:
    done = monitor("report", "--store", str(straggler), "--since", SINCE, "--until", UNTIL)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Rack report {SINCE} .. {UNTIL}"
    assert "THROUGHPUT" in lines and "SUSPECTS" in lines
    assert any(line.startswith("  sustained: ") and "generated tok/s" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--since", "2020-01-01T00:00:00Z", "--until", "2020-01-01T01:00:00Z"],
            "no data between 2020-01-01T00:00:00Z",
        ),
        (["--since", "soon"], "bad --since 'soon'"),
        (["--last", "1h", "--format", "pdf"], "unknown format 'pdf'"),
        (["--last", "1h", "--since", "now-2h"], "not both"),
    ],
)
def test_bad_input_is_one_line(straggler: Path, args: list[str], message: str) -> None:
    one_line_error(monitor("report", "--store", str(straggler), *args), message)


def test_robust_outliers() -> None:
    peers = {g: 15_000.0 + (g % 5) * 40 for g in range(72)}
    assert robust_low(peers) == {} and robust_high(peers) == {}
    slow = {**peers, 9: 9_000.0, 30: 14_100.0}
    assert set(robust_low(slow)) == {9, 30}
    flat = dict.fromkeys(range(8), 70.0) | {3: 80.0}
    assert set(robust_high(flat)) == {3}  # MAD 0: the 5 % gap alone decides
    assert robust_low({1: 1.0, 2: 100.0}) == {}  # two values have no peers to judge by


def _heatmap_svg(page: str, name: str) -> str:
    found = re.search(rf'<svg [^>]*aria-label="{name} per GPU">.*?</svg>', page)
    assert found, name
    return found.group(0)


def test_a_flat_heatmap_is_one_neutral_colour_and_says_its_one_value(steady: Path) -> None:
    """After warm-up every simulated GPU of a steady rack runs at its top SM clock (collectors.sim.gpu's
    MAX_SM_MHZ), so the SM clock map is flat: painted neither as 'low' nor 'high', its legend the value."""
    with StoreReader(steady) as reader:
        page = render_report(reader, Window((END_S - 60) * 1000, END_S * 1000))
    clock = _heatmap_svg(page, "SM clock")
    cells = re.findall(r'<rect x="[^"]*" y="[^"]*" width="[^"]*" height="5" fill="(#[0-9a-f]+)"/>', clock)
    assert len(cells) >= GPUS and len(set(cells)) == 1, set(cells)
    swatches = re.findall(r'height="10" fill="(#[0-9a-f]+)"', clock)
    assert swatches == cells[:1] and cells[0] not in (*PALETTE, "#ccc")
    assert f">all {MAX_SM_MHZ} MHz</text>" in clock
    # A map that varies keeps the palette and its range.
    power = _heatmap_svg(page, "Power")
    assert re.findall(r'height="10" fill="(#[0-9a-f]+)"', power) == list(PALETTE)
    assert ">all " not in power
