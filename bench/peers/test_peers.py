"""Tests of the peer benchmark: the export is exact, the answers' check can fail, servers stay on loopback."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from compare import compare, differences
from export import GROUPS, slices, store_samples, write_slice
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from questions import QUESTIONS, Answer, Window, from_prometheus_json, raw_query
from rules import (
    precomputed_query,
    probe_phases,
    promtool_rules,
    rules_for,
    tiled_increase,
    tiles,
    write_rules,
)

from bench.peers.servers import BenchError, Server, free_port, prometheus, victoria_metrics
from monitor.backfill import SimFrames, backfill
from storage.reader import StoreReader
from storage.rollups import DIMENSIONS
from storage.schemas import SORT_KEYS, TABLES

UNTIL_S = 1_735_693_200  # 2025-01-01 01:00 UTC
SECONDS = 120


FAULT_AT_S = 30
"""The restart half a minute in: the servers' counters (and the tray's NVML ones) reset inside the
first 1-minute rule bucket and inside q5's raw head."""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two minutes of the simulated rack in a real store, with a tray restarted (counter resets)."""
    root = tmp_path_factory.mktemp("peers") / "store"
    backfill(
        root, SECONDS, end_s=UNTIL_S - 1,
        frames=lambda start: SimFrames(3, "restart", start, 1.0, fast=True, fault_at=FAULT_AT_S),
    )  # fmt: skip
    return root


WINDOW = Window((UNTIL_S - SECONDS) * 1000, UNTIL_S * 1000)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_export_is_the_store_sample_for_sample(store: Path, tmp_path: Path, group: str) -> None:
    spec = GROUPS[group]
    with StoreReader(store) as reader:
        piece = write_slice(reader, group, WINDOW.since_ms, WINDOW.until_ms, tmp_path / "x.om")
        expected = store_samples(reader, group, WINDOW.since_ms, WINDOW.until_ms)
        rows = reader.sql(f"SELECT * FROM {reader.relation(spec.table)}").to_pylist()
    text = piece.path.read_text()
    assert text.endswith("# EOF\n")
    assert piece.samples == expected == text.count("\n") - 1
    by_family = {f.name: f for f in spec.families}
    row_at = {(tuple(r[k] for k in spec.keys), int(r["ts"].timestamp())): r for r in rows}
    seen = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            fam = by_family.get(sample.name) or by_family[family.name]
            labels = sample.labels
            key = tuple(int(labels[k]) if k in ("gpu", "link") else labels[k] for k in spec.keys)
            row = row_at[key, int(float(sample.timestamp))]
            assert sample.value == pytest.approx(row[fam.column] * fam.scale, rel=1e-12)
            seen += 1
    assert seen == piece.samples


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_measured_column_is_exported(group: str) -> None:
    # Our bytes are whole files, every column: a peer given fewer columns holds less data.
    table = TABLES[GROUPS[group].table]
    skipped = {"ts", *SORT_KEYS[GROUPS[group].table], *DIMENSIONS}
    measured = {f.name for f in table if f.name not in skipped}
    assert set(GROUPS[group].columns) == measured


def test_series_are_contiguous_and_time_ordered(store: Path, tmp_path: Path) -> None:
    with StoreReader(store) as reader:
        piece = write_slice(reader, "nvlink", WINDOW.since_ms, WINDOW.until_ms, tmp_path / "n.om")
    last: dict[str, float] = {}
    finished: set[str] = set()
    current = None
    for line in piece.path.read_text().splitlines()[:-1]:
        series, _, rest = line.rpartition("} ")
        ts = float(rest.split()[1])
        if series != current:
            assert series not in finished, "a series was split"
            if current is not None:
                finished.add(current)
            current = series
        assert ts > last.get(series, -math.inf)
        last[series] = ts


def test_slices_cut_on_block_boundaries() -> None:
    two_h = 7_200_000
    assert list(slices(1_000, 3 * two_h + 5, two_h)) == [
        (1_000, two_h),
        (two_h, 2 * two_h),
        (2 * two_h, 3 * two_h),
        (3 * two_h, 3 * two_h + 5),
    ]


def test_tiles_share_their_edges_and_use_the_coarsest_buckets() -> None:
    h = 1_735_689_600  # an hour boundary
    # 1 h window: no hour rule fits (its end sample, at h+3600, is outside), so minutes then raw.
    assert tiles(h, h + 3599) == [("1m", h, h + 3540), ("raw", h + 3540, h + 3599)]
    # 6 h: five hours, 59 minutes, 59 s of raw samples.
    assert tiles(h, h + 6 * 3600 - 1) == [
        ("1h", h, h + 5 * 3600),
        ("1m", h + 5 * 3600, h + 6 * 3600 - 60),
        ("raw", h + 6 * 3600 - 60, h + 6 * 3600 - 1),
    ]
    # Mid-minute start, crossing an hour boundary that a whole hour follows.
    assert tiles(h - 90, h + 3600) == [
        ("raw", h - 90, h - 60),
        ("1m", h - 60, h),
        ("1h", h, h + 3600),
    ]


def test_tiled_increase_is_promql_over_rule_samples_and_raw_edges() -> None:
    h = 1_735_689_600
    expr = tiled_increase("x", {"1m": "r1m", "1h": "r1h"}, h + 30, h + 3599, {"1m": 12_345, "1h": 0})
    assert expr == (
        f"increase(x[30s] @ {h + 60}) + sum_over_time(r1m[3421s] @ {h + 3540 + 12.345:.3f}) "
        f"+ increase(x[59s] @ {h + 3599})"
    )


def test_prometheus_json_vector_and_matrix() -> None:
    doc = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"__name__": "x", "gpu": "4"}, "values": [[10, "1"], [11, "2.5"]]}],
        },
    }
    assert from_prometheus_json(doc) == {"gpu=4": [(10.0, 1.0), (11.0, 2.5)]}
    doc["data"] = {"resultType": "vector", "result": [{"metric": {}, "value": [12, "3"]}]}
    assert from_prometheus_json(doc) == {"": [(12.0, 3.0)]}


STRAY_LISTENER = """
import http.server, socket, sys
stray = socket.socket()
stray.bind(("127.0.0.2", 0))  # another address (still loopback, so nothing leaves the machine)
stray.listen()
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_a_server_listening_beyond_127_0_0_1_is_refused_and_stopped(tmp_path: Path) -> None:
    port = free_port()
    server = Server("stray", [sys.executable, "-c", STRAY_LISTENER, str(port)], port, "/", tmp_path / "log")
    with pytest.raises(BenchError, match=r"listens on 127\.0\.0\.2"):
        server.__enter__()
    assert server.proc is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_strict_comparison_fails_on_one_point() -> None:
    base: Answer = {"gpu=0": [(60.0, 5.0), (120.0, 6.0)], "gpu=1": [(60.0, 1.0), (120.0, 2.0)]}
    same = {k: list(v) for k, v in base.items()}
    assert compare(
        {"a": base, "b": same, "c": {k: [(t, v * (1 + 1e-12)) for t, v in p] for k, p in base.items()}}
    ).agree
    one_value = {**same, "gpu=1": [(60.0, 1.0), (120.0, 2.001)]}
    one_ts = {**same, "gpu=1": [(60.0, 1.0), (180.0, 2.0)]}
    one_missing = {**same, "gpu=1": [(60.0, 1.0)]}
    no_series = {"gpu=0": same["gpu=0"]}
    extra_series = {**same, "gpu=2": [(60.0, 0.0)]}
    nan = {**same, "gpu=0": [(60.0, math.nan), (120.0, 6.0)]}
    for wrong in (one_value, one_ts, one_missing, no_series, extra_series, nan):
        verdict = compare({"a": base, "b": same, "c": wrong})
        assert not verdict.agree and verdict.text.startswith("DIFFER: c vs a"), wrong
    assert differences(base, one_value) == ["'gpu=1' at ts 120: 2.001, expected 2.0"]
    assert not compare({"a": {}, "b": {}}).agree, "two empty answers prove nothing"
    assert not compare({"a": base}).agree


needs_peers = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("prometheus", "promtool", "victoria-metrics")),
    reason="Debian's prometheus and victoria-metrics are not installed",
)


@pytest.fixture(scope="module")
def asked(store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Answer]]:
    """Every question asked of every system and variant, as run.py asks them (no timing)."""
    import systems
    from ours import variants

    tmp = tmp_path_factory.mktemp("asked")
    answers: dict[str, dict[str, Answer]] = {q.key: {} for q in QUESTIONS}

    def ask(server: Server, name: str, query: Any, extra: dict[str, str] | None = None) -> Answer:
        return systems.ask(server, query, 1, extra)["answer"]

    with victoria_metrics(tmp / "vm", tmp / "vm.log") as vm, StoreReader(store) as reader:
        for group in GROUPS:
            piece = write_slice(reader, group, WINDOW.since_ms, WINDOW.until_ms, tmp / f"{group}.om")
            systems.promtool_load(piece.path, tmp / "prom")
            systems.vm_import(vm, piece.path)
        systems.vm_settle(vm)
        for q in QUESTIONS:
            answers[q.key]["vm/raw"] = ask(
                vm, q.key, raw_query(q, WINDOW, "victoria-metrics"), {"nocache": "1"}
            )
            answers[q.key]["vm/cached"] = ask(vm, q.key, raw_query(q, WINDOW, "victoria-metrics"))
            for name, run in variants(reader, q, WINDOW, "rows").items():
                answers[q.key][f"ours/{name}"] = run()
    rules = [r for group in GROUPS for r in rules_for(group)]
    with prometheus(tmp / "prom", tmp / "prom.log", max_samples=10**8) as prom:
        for q in QUESTIONS:
            answers[q.key]["prometheus/raw"] = ask(prom, q.key, raw_query(q, WINDOW, "prometheus"))
        phases = probe_phases(prom, tmp / "rules.yml", rules, WINDOW.since_s, tmp)
        write_rules(tmp / "rules.yml", rules, phases)
        promtool_rules(
            prom, tmp / "rules.yml", tmp / "rule-blocks", WINDOW.since_s, WINDOW.until_ms // 1000 + 60
        )
    for block in (tmp / "rule-blocks").iterdir():
        block.rename(tmp / "prom" / block.name)
    with prometheus(tmp / "prom", tmp / "prom2.log", max_samples=10**8) as prom:
        for q in QUESTIONS:
            if q.precomputed:
                answers[q.key]["prometheus/precomputed"] = ask(
                    prom, q.key, precomputed_query(q, WINDOW, phases)
                )
    return answers


@needs_peers
@pytest.mark.parametrize("key", [q.key for q in QUESTIONS])
def test_every_system_gives_the_same_answer_point_for_point(
    asked: dict[str, dict[str, Answer]], key: str
) -> None:
    answers = asked[key]
    expected = {"ours/raw", "vm/raw", "vm/cached", "prometheus/raw"}
    if key != "q1":
        expected |= {"ours/precomputed", "prometheus/precomputed"}
    assert set(answers) == expected
    ordered = {"ours/raw": answers["ours/raw"], **answers}
    verdict = compare(ordered)
    assert verdict.agree, verdict.text
    sizes = {"q1": 72 * 120, "q2": 72 * 2, "q3": 1, "q4": 72 * 18, "q5": 72 * 18}
    assert verdict.points["ours/raw"] == sizes[key]


@needs_peers
def test_the_tokens_answer_crosses_counter_resets(
    store: Path, tmp_path: Path, asked: dict[str, dict[str, Answer]]
) -> None:
    """The restarted servers' token counters fall to 0 in the window; each system counts the new work only.

    Expected: sum over endpoints of the per-second rate, the increase computed here from the exported
    text with the reset rule (a value below its predecessor counts itself), divided by the span.
    """
    with StoreReader(store) as reader:
        piece = write_slice(reader, "serving", WINDOW.since_ms, WINDOW.until_ms, tmp_path / "s.om")
    series: dict[str, list[tuple[float, float]]] = {}
    for line in piece.path.read_text().splitlines():
        if line.startswith("rackmon_serving_generation_tokens_total{"):
            labels, value, ts = line.rsplit(" ", 2)
            series.setdefault(labels, []).append((float(ts), float(value)))
    resets = 0
    total = 0.0
    for pts in series.values():
        for (_, a), (_, b) in itertools.pairwise(pts):
            resets += b < a
            total += b if b < a else b - a
    assert resets > 0, "the restart scenario must reset token counters inside the window"
    span = SECONDS - 1
    assert asked["q3"]["ours/raw"][""][0][1] == pytest.approx(total / span, rel=1e-12)
    assert compare(asked["q3"]).agree


def _tiny_results() -> dict[str, Any]:
    timing = {"median_ms": 2.0, "min_ms": 1.0, "max_ms": 3.0, "runs": 7, "load1": 1.0}
    return {
        "date": "2026-12-06T09:00:00+00:00",
        "command": "run.py --hours 1",
        "machine": {"cores": 2, "load_start": [1.0, 1.0, 1.0], "load_end": [2.0, 2.0, 2.0]},
        "window": {"hours": 1, "since": "a", "until": "b"},
        "scenario": "restart",
        "seed": 0,
        "repeats": 7,
        "versions": {"rack-monitor": "abc"},
        "groups": {
            "serving": {
                "samples": {"store": 10, "exported": 10, "prometheus": 10, "victoria-metrics": 10},
                "ours": {"bytes": 5, "rollup_bytes": 2, "manifest_share_bytes": 1},
                "prometheus": {"bytes": 20, "rule_bytes": 4},
                "victoria-metrics": {"bytes": 8},
                "questions": {
                    "q3": {
                        "ours/precomputed": timing,
                        "prometheus/raw": {**timing, "median_ms": 9.0, "path": "/q", "query": "x"},
                    }
                },
                "checks": {"q3": {"agree": False, "text": "DIFFER: x", "points": {}}},
            }
        },
    }


def test_docs_replace_only_the_marked_section(tmp_path: Path) -> None:
    import docs

    run = tmp_path / "run.json"
    run.write_text(json.dumps(_tiny_results()))
    doc = tmp_path / "b.md"
    doc.write_text(f"before\n{docs.BEGIN}\nold tables\n{docs.END}\nafter\n")
    sys.argv = ["docs.py", str(run), "--doc", str(doc)]
    assert docs.main() == 0
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith(f"{docs.END}\nafter\n") and "old tables" not in text
    # 8 of 10 B/sample with rollups and manifest share; the sizes row bolds the smallest.
    assert "| serving | 10 (yes) | **0.500** | 0.800 | 2.000 | 2.400 | 0.800 |" in text
    assert "| q3: rack generated tokens/s over the window | 2.0 | - | - | **DIFFER** |" in text
    doc.write_text("no markers\n")
    assert docs.main() == 1
