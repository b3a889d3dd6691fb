"""Lossless: every value the simulator's frames carry, made noisy (counter resets, NaN, -0.0, gaps,
extreme integers), reads back bit for bit through StoreReader after the store has sealed and compacted
it, whatever encodings the compacted files measured for their columns."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from monitor.backfill import SimFrames
from storage.frame import Frame
from storage.layout import read_manifest
from storage.reader import StoreReader
from storage.rollups import rollup_name, rollup_schema, rollup_sql
from storage.schemas import COUNTERS, SORT_KEYS, TABLES
from storage.writer import StoreWriter

START_S = 1_735_686_000
"""2024-12-31 23:00 UTC: an hour that seals (hour files and rollups, merged into the day's file as the
day ends), then the open hour's segments."""
COMPACTED = ("hour", "day")
STEP_S = 60
TICKS = 95
CHECKED = ("gpu", "nvlink", "serving", "serving_hist", "processes", "events")
BIG = 2**62
"""Counters near the top of int64: delta and byte-stream-split encodings must not overflow or truncate."""


def _replace(batch: pa.RecordBatch, name: str, values: list[object]) -> pa.RecordBatch:
    i = batch.schema.get_field_index(name)
    return batch.set_column(i, batch.schema.field(i), pa.array(values, type=batch.schema.field(i).type))


def _noisy_gpu(batch: pa.RecordBatch, tick: int) -> pa.RecordBatch:
    """Resets (GPU 5's energy restarts at tick 40), a huge counter, gaps (nulls) and a GPU that vanishes."""
    energy = batch.column("energy_mj").to_pylist()
    util = batch.column("util_gpu_pct").to_pylist()
    tx = batch.column("nvlink_tx_kib").to_pylist()
    for row, gpu in enumerate(batch.column("gpu").to_pylist()):
        if gpu == 5 and tick >= 40 and energy[row] is not None:
            energy[row] = (tick - 40) * 7  # restarted from 0: a reset, then growth
        if gpu == 6 and tx[row] is not None:
            tx[row] = BIG + tick * 1_000_003  # near int64's top
        if gpu == 7 and tick % 3 == 0:
            util[row] = None  # a gap
    batch = _replace(
        _replace(_replace(batch, "energy_mj", energy), "util_gpu_pct", util), "nvlink_tx_kib", tx
    )
    if 50 <= tick < 55:  # GPU 9's rows vanish for five ticks
        batch = batch.filter(pc.not_equal(batch.column("gpu"), 9))
    return batch


def _noisy_nvlink(batch: pa.RecordBatch, tick: int) -> pa.RecordBatch:
    """One link's error counter resets; another's values go null for a while."""
    errors = batch.column("symbol_errors").to_pylist()
    rx = batch.column("rx_kib").to_pylist()
    for row, (gpu, link) in enumerate(
        zip(batch.column("gpu").to_pylist(), batch.column("link").to_pylist(), strict=True)
    ):
        if (gpu, link) == (3, 4):
            errors[row] = 1000 + tick if tick < 30 else tick - 30
        if (gpu, link) == (8, 17) and 20 <= tick < 26:
            rx[row] = None
    return _replace(_replace(batch, "symbol_errors", errors), "rx_kib", rx)


def _noisy_hist(batch: pa.RecordBatch, tick: int) -> pa.RecordBatch:
    """Float edge cases in the histogram sums: NaN, -0.0, infinities and subnormals."""
    sums = batch.column("sum_s").to_pylist()
    odd = [float("nan"), -0.0, float("inf"), float("-inf"), 5e-324, 1.0000000000000002]
    for row in range(len(sums)):
        if sums[row] is not None and (row + tick) % 5 == 0:
            sums[row] = odd[(row + tick) % len(odd)]
    return _replace(batch, "sum_s", sums)


NOISE = {"gpu": _noisy_gpu, "nvlink": _noisy_nvlink, "serving_hist": _noisy_hist}


def noisy_frames() -> Iterator[Frame]:
    """The simulated rack (fast path, a restart scenario), each frame made noisy as above."""
    sim = SimFrames(11, "restart", START_S, STEP_S, fast=True, fault_at=1800)
    try:
        for tick in range(TICKS):
            frame = next(sim)
            batches = {name: NOISE.get(name, lambda b, _t: b)(b, tick) for name, b in frame.batches.items()}
            yield Frame(frame.ts_ms, batches)
    finally:
        sim.close()


def bits(table: pa.Table) -> pa.Table:
    """The table with every float column seen as its int64 bit pattern (NaN == NaN, -0.0 != 0.0)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_float64(f.type):
            table = table.set_column(i, f.name, table.column(i).combine_chunks().view(pa.int64()))
    return table


def ordered(table: pa.Table, name: str) -> pa.Table:
    keys = [*SORT_KEYS[name], "ts"] if SORT_KEYS[name] else ["ts", "kind", "gpu", "code"]
    return bits(table.sort_by([(k, "ascending") for k in keys]))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pa.Table]]:
    """A store of the noisy frames, and every row handed to the writer, by table."""
    store = tmp_path_factory.mktemp("lossless") / "s"
    sent: dict[str, list[pa.RecordBatch]] = {}
    with StoreWriter(store, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
        for frame in noisy_frames():
            for name, batch in frame.batches.items():
                sent.setdefault(name, []).append(batch)
            writer.append(frame)
    return store, {name: pa.Table.from_batches(b).cast(TABLES[name]) for name, b in sent.items()}


def test_the_store_compacted_an_hour_with_measured_encodings(
    written: tuple[Path, dict[str, pa.Table]],
) -> None:
    store, _ = written
    manifest = read_manifest(store)
    for name in ("gpu", "nvlink", "serving", "serving_hist"):
        levels = {f.level for f in manifest.of(name)}
        assert "seg" in levels and levels & set(COMPACTED), name
    used = set()
    for f in manifest.files:
        if f.level in COMPACTED:
            meta = pq.ParquetFile(store / f.path).metadata
            used |= {e for c in range(meta.num_columns) for e in meta.row_group(0).column(c).encodings}
    # Each candidate encoding won somewhere, so each one's round trip is checked below.
    assert {"DELTA_BINARY_PACKED", "BYTE_STREAM_SPLIT", "RLE_DICTIONARY"} <= used


@pytest.mark.parametrize("name", CHECKED)
def test_every_value_reads_back_bit_identical(written: tuple[Path, dict[str, pa.Table]], name: str) -> None:
    store, sent = written
    with StoreReader(store) as reader:
        back = reader.sql(f"SELECT * FROM {reader.relation(name)}").select(TABLES[name].names)
    back = back.cast(TABLES[name])
    assert back.num_rows == sent[name].num_rows
    assert ordered(back, name).equals(ordered(sent[name], name))


def test_the_noise_went_in(written: tuple[Path, dict[str, pa.Table]]) -> None:
    """The frames really carry what the test claims (a reset, NaN, -0.0, gaps, near-2**62 counters)."""
    _, sent = written
    gpu = sent["gpu"].to_pylist()
    energy5 = [r["energy_mj"] for r in sorted(gpu, key=lambda r: r["ts"]) if r["gpu"] == 5]
    assert any(b < a for a, b in itertools.pairwise(energy5))
    assert max(r["nvlink_tx_kib"] or 0 for r in gpu) > BIG
    assert sum(1 for r in gpu if r["gpu"] == 9) == TICKS - 5
    sums = sent["serving_hist"].column("sum_s").to_pylist()
    assert any(s != s for s in sums if s is not None) and any(str(s) == "-0.0" for s in sums)
    assert COUNTERS["gpu"] >= {"energy_mj", "nvlink_tx_kib"}


@pytest.mark.parametrize("name", ["gpu", "serving", "serving_hist"])
def test_rollup_files_read_back_as_the_rollup_of_the_raw_rows(
    written: tuple[Path, dict[str, pa.Table]], name: str
) -> None:
    """The 1-minute rollup files (float means included) equal the same SQL over the raw rows read back."""
    store, _ = written
    manifest = read_manifest(store)
    hour = next(f for f in manifest.of(name) if f.level in COMPACTED)
    schema = rollup_schema(name)
    with StoreReader(store) as reader:
        filed = reader.sql(
            f"SELECT * FROM {reader.relation(rollup_name(name, '1m'), hour.min_ts, hour.max_ts)}"
        )
        raw = reader.relation(name, hour.min_ts, hour.max_ts)
        again = reader.sql(
            f"SELECT * REPLACE (make_timestamptz(ts * 1000) AS ts) FROM ({rollup_sql(name, 60_000, raw)})"
        )
    keys = [(k, "ascending") for k in (*SORT_KEYS[name], "ts")]
    filed = bits(filed.select(schema.names).cast(schema).sort_by(keys))
    again = bits(again.select(schema.names).cast(schema).sort_by(keys))
    assert filed.num_rows > 0 and filed.equals(again)
