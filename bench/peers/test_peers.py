"""Tests of the peer benchmark: the export is exact, the answers' check can fail, servers stay on loopback."""

from __future__ import annotations

import math
import shutil
import socket
import sys
from pathlib import Path

import pytest
from export import GROUPS, slices, store_samples, write_slice
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from questions import QUESTIONS, Window, check, from_prometheus_json
from servers import BenchError, Server, free_port, prometheus, victoria_metrics

from monitor.backfill import backfill
from storage.reader import StoreReader

UNTIL_S = 1_735_693_200  # 2025-01-01 01:00 UTC
SECONDS = 120


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two minutes of the simulated rack, with a flapping link, in a real store."""
    root = tmp_path_factory.mktemp("peers") / "store"
    backfill(root, SECONDS, scenario="nvlink-flap", seed=3, end_s=UNTIL_S - 1)
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


def test_check_tells_agreement_from_disagreement() -> None:
    q1, q3 = QUESTIONS[0], QUESTIONS[2]
    same = {"gpu=0": [(1.0, 5.0), (2.0, 6.0)]}
    assert check(q1, {"a": same, "b": {"gpu=0": [(2.0, 6.0)]}}).startswith("agree")
    assert check(q1, {"a": same, "b": {"gpu=0": [(2.0, 7.0)]}}).startswith("DIFFER")
    assert check(q3, {"a": {"": [(9.0, 100.0)]}, "b": {"": [(9.0, 100.05)]}}).startswith("agree")
    assert check(q3, {"a": {"": [(9.0, 100.0)]}, "b": {"": [(9.0, 101.0)]}}).startswith("DIFFER")


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


needs_peers = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("prometheus", "promtool", "victoria-metrics")),
    reason="Debian's prometheus and victoria-metrics are not installed",
)


@needs_peers
def test_both_peers_hold_the_exported_samples_and_answer_like_ours(store: Path, tmp_path: Path) -> None:
    import systems

    with StoreReader(store) as reader:
        piece = write_slice(reader, "gpu", WINDOW.since_ms, WINDOW.until_ms, tmp_path / "g.om")
    systems.promtool_load(piece.path, tmp_path / "prom")
    assert systems.prometheus_measure(tmp_path / "prom")["samples"] == piece.samples
    q1 = QUESTIONS[0]
    answers = {}
    with victoria_metrics(tmp_path / "vm", tmp_path / "vm.log") as vm:
        systems.vm_import(vm, piece.path)
        systems.vm_settle(vm)
        assert systems.vm_measure(vm, tmp_path / "vm")["samples"] == piece.samples
        answers["vm"] = systems.ask(vm, q1, WINDOW, 1, {"nocache": "1"})["answer"]
        pid = vm.pid
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    with prometheus(tmp_path / "prom", tmp_path / "prom.log", max_samples=10**8) as prom:
        answers["prometheus"] = systems.ask(prom, q1, WINDOW, 1)["answer"]
    assert check(q1, answers).startswith("agree")
    assert sum(len(p) for p in answers["prometheus"].values()) == 72 * 120
