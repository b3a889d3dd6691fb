"""The sim's fast frame path equals the driver path, tick by tick, in every scenario, faults included.

Two racks with the same seed and scenario on their own manual clocks: one read by 18 real
NvmlCollectors over its SimTrays, one by SimRackFrames. Every gpu, nvlink and processes row and every
GPU event must be identical; serving rows must equal the workload's counters and what the real page
mapping makes of the page the sim's HTTP layer renders for the same instance (collectors.sim.pages).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from collectors.clock import SimClock
from collectors.mappings.serving import map_serving
from collectors.nvml import NvmlCollector
from collectors.series_counters import SeriesCounters
from collectors.sim import SCENARIOS, SimRack
from collectors.sim.frames import SimRackFrames, endpoint_name, tray_source
from collectors.sim.pages import RENDERERS
from monitor.backfill import SimFrames, backfill
from storage.frame import Frame, merge_frames
from storage.reader import StoreReader
from storage.schemas import COUNTERS, SORT_KEYS, EndpointState, EventKind

T0 = 1_760_000_000.0
SEED = 7
FAULT_AT = 5.0
TICKS = {
    "steady": 20,
    "thermal": 120,
    "nvlink-flap": 60,
    "gpu-lost": 20,
    "straggler": 20,
    "endpoint-down": 20,
    "restart": 20,
}
"""Ticks per scenario: each window runs past the fault's first visible effect (thermal throttles late)."""
FAULT_EVENTS = {
    "steady": set(),
    "thermal": {EventKind.CLOCKS_EVENT},
    "nvlink-flap": {EventKind.XID, EventKind.LINK_DOWN},
    "gpu-lost": {EventKind.XID, EventKind.GPU_LOST},
    "straggler": {EventKind.CLOCKS_EVENT},
    "endpoint-down": {EventKind.ENDPOINT_DOWN},
    "restart": {EventKind.ENDPOINT_DOWN, EventKind.ENDPOINT_UP},
}
"""Event kinds each scenario's fault must have produced inside its window (so the window has it)."""
ENDPOINT_KINDS = {EventKind.ENDPOINT_DOWN, EventKind.ENDPOINT_UP}


def _paired(scenario: str, ticks: int) -> Iterator[tuple[Frame, Frame, SimRack]]:
    """(driver-path frame, fast-path frame, the fast path's rack) for each tick of two identical racks."""
    clocks = (SimClock(T0), SimClock(T0))
    racks = [SimRack(SEED, scenario, c, start=T0, fault_at=FAULT_AT) for c in clocks]
    collectors = [NvmlCollector(tray, name=tray_source(tray.tray)) for tray in racks[0].trays]
    fast = SimRackFrames(racks[1])
    try:
        for i in range(ticks):
            if i:
                for c in clocks:
                    c.advance(1.0)
            ts_ms = round(clocks[0].now() * 1000)
            exact = merge_frames(ts_ms, [c.poll(ts_ms) for c in collectors])
            yield exact, fast.poll(ts_ms), racks[1]
    finally:
        for c in collectors:
            c.close()


def _sorted(frame: Frame, table: str) -> pa.Table:
    keys = [(k, "ascending") for k in SORT_KEYS[table]]
    return pa.Table.from_batches([frame.table(table)]).sort_by(keys)


def _events(frame: Frame, *, gpu_only: bool) -> list[tuple[object, ...]]:
    rows = frame.table("events").to_pylist()
    return [
        (r["kind"], r["gpu"], r["link"], r["code"], r["source"], r["detail"])
        for r in rows
        if not gpu_only or r["kind"] not in ENDPOINT_KINDS
    ]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fast_path_equals_the_driver_path(scenario: str) -> None:
    assert scenario in TICKS, f"new scenario {scenario!r}: give it a window in TICKS and FAULT_EVENTS"
    kinds: set[str] = set()
    processes = 0
    for exact, fast, _ in _paired(scenario, TICKS[scenario]):
        for table in ("gpu", "nvlink", "processes"):
            a, b = _sorted(exact, table), _sorted(fast, table)
            assert a.schema == b.schema
            for name in a.column_names:
                assert a.column(name).equals(b.column(name)), f"{table}.{name} differs at {exact.ts_ms}"
        processes += fast.table("processes").num_rows
        # Same events, in the same order, with the same source and detail (stronger than a set).
        assert _events(fast, gpu_only=True) == _events(exact, gpu_only=False)
        kinds |= {e[0] for e in _events(fast, gpu_only=False)}
    assert kinds == FAULT_EVENTS[scenario]
    assert processes > 0


def test_lost_gpu_rows_and_links() -> None:
    lost_ticks = 0
    for _, fast, rack in _paired("gpu-lost", 10):
        gpu = rack.scenario.fault.gpu
        if not rack.gpus[gpu].lost:
            continue
        lost_ticks += 1
        row = _sorted(fast, "gpu").to_pylist()[gpu]
        assert row["state"] == 1 and row["power_mw"] is None and row["uuid"] == rack.gpus[gpu].id.uuid
        assert gpu not in fast.table("nvlink").column("gpu").to_pylist()
    assert lost_ticks == 10 - FAULT_AT


def test_serving_rows_equal_the_workload_counters() -> None:
    for _, fast, rack in _paired("endpoint-down", 8):
        rows = {r["endpoint"]: r for r in fast.table("serving").to_pylist()}
        assert len(rows) == len(rack.workload.instances)
        for inst in rack.workload.instances:
            row = rows[endpoint_name(inst)]
            assert row["gpus"] == ",".join(map(str, inst.gpus))
            assert row["engine"] == inst.engine
            if not inst.answering:
                assert row["state"] == EndpointState.DOWN and row["generation_tokens"] is None
                continue
            assert row["state"] == EndpointState.OK
            assert row["model"] == inst.model
            assert row["prompt_tokens"] == inst.prompt_tokens
            assert row["generation_tokens"] == inst.generation_tokens
            assert row["requests_ok"] == inst.requests_ok
            assert row["preemptions"] == inst.preemptions
            assert (row["running"], row["waiting"]) == (inst.running, inst.waiting)
            assert row["kv_cache_q4"] == round(inst.kv_cache_usage * 10_000)
    answering = [i for i in rack.workload.instances if i.answering]
    assert 0 < len(answering) < len(rack.workload.instances)
    hist = fast.table("serving_hist")
    endpoints = set(hist.column("endpoint").to_pylist())
    assert endpoints == {endpoint_name(i) for i in answering}


@pytest.mark.parametrize(("engines", "tp"), [(("vllm",), 1), (("vllm", "sglang", "trtllm"), 2)])
def test_serving_rows_equal_the_mapping_of_the_sim_pages(engines: tuple[str, ...], tp: int) -> None:
    rack = SimRack(SEED, "steady", SimClock(T0), start=T0, engines=engines, tp=tp)
    fast = SimRackFrames(rack)
    states: dict[str, SeriesCounters] = defaultdict(SeriesCounters)
    before: dict[str, tuple[dict, dict]] = {}
    for tick in range(4):
        frame = fast.poll(round((T0 + tick) * 1000))
        serving = {r["endpoint"]: r for r in frame.table("serving").to_pylist()}
        hist = frame.table("serving_hist").to_pylist()
        with rack.lock:
            for inst in rack.workload.instances:
                endpoint = endpoint_name(inst)
                page = RENDERERS[inst.engine](inst)
                mapped = map_serving(page, endpoint, frame.ts_ms, engine=inst.engine, series=states[endpoint])
                expected = mapped.table("serving").to_pylist()[0]
                expected["gpus"] = ",".join(map(str, inst.gpus))  # from the rack config, not the page
                got = serving[endpoint]
                # Counters: the sim keeps the instance's own, the mapping running totals from 0; their
                # increases (reader's reset rule) from tick to tick are equal.
                assert _without(got, COUNTER_COLUMNS) == _without(expected, COUNTER_COLUMNS)
                if endpoint in before:
                    for column in COUNTER_COLUMNS:
                        assert _increase(before[endpoint][0], got, column) == _increase(
                            before[endpoint][1], expected, column
                        ), column
                before[endpoint] = (got, expected)
                assert [r for r in hist if r["endpoint"] == endpoint] == mapped.table(
                    "serving_hist"
                ).to_pylist()
    assert {r["engine"] for r in serving.values()} == set(engines)


COUNTER_COLUMNS = sorted(COUNTERS["serving"])


def _without(row: dict, columns: list[str]) -> dict:
    return {k: v for k, v in row.items() if k not in columns}


def _increase(before: dict, after: dict, column: str) -> int | None:
    p, v = before[column], after[column]
    if p is None or v is None:
        return None if p is None and v is None else -1
    return v - p if v >= p else v


def test_backfill_frames_fast_and_exact_agree() -> None:
    fast, exact = SimFrames(SEED, "nvlink-flap", T0, fast=True), SimFrames(SEED, "nvlink-flap", T0)
    try:
        for _ in range(3):
            f, e = next(fast), next(exact)
            assert f.ts_ms == e.ts_ms
            assert _sorted(f, "gpu").equals(_sorted(e, "gpu"))
            assert {"serving", "serving_hist"} <= f.batches.keys()
            assert not {"serving", "serving_hist"} & e.batches.keys()
    finally:
        fast.close()
        exact.close()


def test_events_before_the_fast_path_started_are_not_reported() -> None:
    rack = SimRack(SEED, "gpu-lost", SimClock(T0), start=T0, fault_at=1.0)
    rack.advance_to(T0 + 3)
    frame = SimRackFrames(rack).poll(round((T0 + 3) * 1000))
    kinds = frame.table("events").column("kind").to_pylist()
    # Like an NVML event set registered after the XID: no XID, but the lost GPU is reported once.
    assert kinds == [EventKind.GPU_LOST]


def _dump(root: Path, table: str, order: str) -> list[dict[str, object]]:
    with StoreReader(root) as reader:
        return reader.sql(f"SELECT * FROM {table} ORDER BY {order}").to_pylist()


def test_backfilled_stores_agree_fast_and_exact(tmp_path: Path) -> None:
    end = T0 + 90  # the scenario's fault starts 60 s in: the window holds the flapping link
    fast = backfill(tmp_path / "fast", 90, scenario="nvlink-flap", seed=SEED, end_s=end)
    exact = backfill(tmp_path / "exact", 90, scenario="nvlink-flap", seed=SEED, end_s=end, exact=True)
    assert (fast.ticks, fast.first_ms, fast.last_ms) == (exact.ticks, exact.first_ms, exact.last_ms)
    for table, order in (("gpu", "gpu, ts"), ("nvlink", "gpu, link, ts"), ("processes", "gpu, ts")):
        assert _dump(tmp_path / "fast", table, order) == _dump(tmp_path / "exact", table, order)
    symbol_errors = _dump(tmp_path / "fast", "nvlink", "ts")
    assert max(r["symbol_errors"] for r in symbol_errors) > 0
    serving = _dump(tmp_path / "fast", "serving", "endpoint, ts")
    assert len(serving) == 90 * 72 and not _dump(tmp_path / "exact", "serving", "ts")
    assert len(_dump(tmp_path / "fast", "serving_hist", "endpoint, metric, le, ts")) > len(serving)


def test_backfill_raises_what_its_frame_source_raised(tmp_path: Path) -> None:
    def frames(start_s: float) -> Iterator[Frame]:
        for i in range(3):
            yield Frame(round((start_s + i) * 1000), {})
        raise RuntimeError("source broke at tick 3")

    with pytest.raises(RuntimeError, match="source broke at tick 3"):
        backfill(tmp_path / "s", 10, frames=frames, end_s=T0)
    assert not [t for t in threading.enumerate() if t.name == "backfill-frames"]
