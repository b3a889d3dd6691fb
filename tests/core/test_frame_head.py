"""Frames and the head: building batches, merging sources, bounded thread-safe history."""

import threading

import pyarrow as pa
import pytest

from storage.frame import Frame, batch_from_columns, batch_from_rows, merge_frames
from storage.head import Head
from storage.schemas import GPU, TABLES


def gpu_batch(ts: int, gpus: list[int]) -> pa.RecordBatch:
    return batch_from_columns(
        "gpu",
        {
            "ts": [ts] * len(gpus),
            "gpu": gpus,
            "uuid": [f"GPU-{g}" for g in gpus],
            "tray": [g // 4 + 1 for g in gpus],
            "state": [0] * len(gpus),
            "power_mw": [200_000 + g for g in gpus],
        },
    )


def test_batch_from_columns_fills_absent_columns_with_nulls():
    batch = gpu_batch(1_000, [0, 1])
    assert batch.schema == GPU
    assert batch.column("power_mw").to_pylist() == [200_000, 200_001]
    assert batch.column("temp_gpu_c").null_count == 2


def test_batch_from_rows_matches_schema():
    batch = batch_from_rows("events", [{"ts": 5, "kind": "xid", "gpu": 3, "code": 79}])
    assert batch.schema == TABLES["events"]
    assert batch.column("code").to_pylist() == [79]


def test_batch_refuses_values_that_do_not_fit_the_type():
    with pytest.raises((pa.ArrowInvalid, OverflowError)):
        batch_from_columns(
            "gpu", {"ts": [1], "gpu": [1], "uuid": ["x"], "tray": [1], "state": [0], "util_gpu_pct": [300]}
        )


def test_merge_frames_concatenates_per_table_and_skips_empty():
    a = Frame(1_000, {"gpu": gpu_batch(1_000, [0, 1])})
    b = Frame(1_000, {"gpu": gpu_batch(1_000, [4, 5]), "events": batch_from_rows("events", [])})
    merged = merge_frames(1_000, [a, b])
    assert merged.table("gpu").column("gpu").to_pylist() == [0, 1, 4, 5]
    assert "events" not in merged.batches
    assert merged.table("events").num_rows == 0
    assert merged.rows == 4


def test_head_is_bounded_and_ordered():
    head = Head(capacity=3)
    for t in range(5):
        head.append(Frame(t * 1000, {"gpu": gpu_batch(t * 1000, [0])}))
    assert head.version == 5
    assert [f.ts_ms for f in head.frames()] == [2000, 3000, 4000]
    assert [f.ts_ms for f in head.latest(2)] == [3000, 4000]
    assert [f.ts_ms for f in head.frames(since_ms=3000)] == [4000]
    assert head.table("gpu").num_rows == 3
    with pytest.raises(ValueError):
        head.append(Frame(1000))


def test_head_wait_for_wakes_on_append():
    head = Head()
    seen: list[int] = []
    waiter = threading.Thread(target=lambda: seen.append(head.wait_for(0, timeout=30)))
    waiter.start()
    head.append(Frame(1000))
    waiter.join(timeout=30)
    assert seen == [1]


def test_head_wait_for_times_out_with_the_same_version():
    head = Head()
    assert head.wait_for(0, timeout=0.01) == 0
