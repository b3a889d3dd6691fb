"""The writer: lock, store format checks, sealing, encodings, compaction, rollups, retention, cleanup."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from storage.frame import Frame, batch_from_columns
from storage.host import HostSampler
from storage.layout import FORMAT_VERSION, MANIFEST, NotAStoreError, StoreVersionError, read_manifest
from storage.lock import StoreLockedError
from storage.reader import StoreReader
from storage.schemas import HOST, Q4_SCALE
from storage.writer import StoreWriter
from tests.storage.synth import GPUS, T0, frame
from tests.store_checks import assert_no_duplicate_rows


def write_ticks(writer: StoreWriter, first: int, last: int, step_ms: int = 1000) -> None:
    for tick in range(first, last):
        writer.append(frame(tick, step_ms))


def test_second_writer_gets_an_error_naming_the_holder(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with StoreWriter(store, compaction="off"):
        with pytest.raises(StoreLockedError) as err:
            StoreWriter(store, compaction="off")
        message = str(err.value)
        assert f"pid {os.getpid()}" in message
        assert socket.gethostname() in message
        assert "since" in message and "UTC" in message
    with StoreWriter(store, compaction="off"):  # released on close
        pass


def test_not_a_store_and_newer_store_get_clear_messages(tmp_path: Path) -> None:
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(NotAStoreError, match="is not a rack-monitor store"):
        StoreWriter(foreign)
    with pytest.raises(NotAStoreError, match=r"no MANIFEST\.json"):
        read_manifest(foreign)
    (foreign / MANIFEST).write_text('{"hello": 1}')
    with pytest.raises(NotAStoreError, match="someone else's"):
        read_manifest(foreign)
    newer = tmp_path / "newer"
    with StoreWriter(newer, compaction="off"):
        pass
    doc = json.loads((newer / MANIFEST).read_text())
    doc["version"] = FORMAT_VERSION + 1
    (newer / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(StoreVersionError, match="newer rack-monitor"):
        read_manifest(newer)
    with pytest.raises(StoreVersionError):
        StoreWriter(newer)


def test_seals_one_segment_per_flush_interval_sorted_and_encoded(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with StoreWriter(store, flush_interval_s=10, compaction="off") as writer:
        write_ticks(writer, 0, 25)
        assert writer.status.sealed_through_ms == T0 + 19_000
        assert writer.status.pending_rows == 5 * GPUS
    manifest = read_manifest(store)
    segs = manifest.of("gpu")
    assert [f.rows for f in segs] == [10 * GPUS, 10 * GPUS, 5 * GPUS]
    assert manifest.sealed_through_ms == T0 + 24_000
    first = store / segs[0].path
    assert first.parent.name == "day=2025-01-01" and first.parent.parent.name == "gpu"
    table = pq.read_table(first)
    keys = list(zip(table.column("gpu").to_pylist(), table.column("ts").to_pylist(), strict=True))
    assert keys == sorted(keys)
    meta = pq.ParquetFile(first).metadata.row_group(0)
    by_name = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert "DELTA_BINARY_PACKED" in by_name["ts"].encodings
    assert "DELTA_BINARY_PACKED" in by_name["energy_mj"].encodings
    assert "RLE_DICTIONARY" in by_name["util_gpu_pct"].encodings
    assert by_name["ts"].compression == "ZSTD"


def test_compaction_makes_hour_and_day_files_with_rollups(tmp_path: Path) -> None:
    store = tmp_path / "s"
    step = 60_000  # one tick a minute: 26 hours in 1,560 ticks
    with StoreWriter(store, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
        write_ticks(writer, 0, 26 * 60, step)
    manifest = read_manifest(store)
    levels = sorted({(f.table, f.level) for f in manifest.files})
    assert ("gpu", "day") in levels and ("gpu", "hour") in levels
    assert ("gpu_1m", "day") in levels and ("gpu_1h", "day") in levels
    day = [f for f in manifest.of("gpu") if f.level == "day"]
    assert len(day) == 1 and day[0].rows == 24 * 60 * GPUS
    assert not manifest.doomed, "grace 0: inputs deleted at once"
    listed = {f.path for f in manifest.files}
    on_disk = {p.relative_to(store).as_posix() for p in store.rglob("*.parquet")}
    assert on_disk == listed
    con = duckdb.connect()
    raw = [str(store / f.path) for f in manifest.of("gpu")]
    hourly = [str(store / f.path) for f in manifest.of("gpu_1h")]
    expect = con.execute(
        "SELECT gpu, time_bucket(INTERVAL 1 HOUR, ts) AS h, min(util_gpu_pct), max(util_gpu_pct),"
        " avg(util_gpu_pct), arg_max(util_gpu_pct, ts), arg_min(energy_mj, ts), arg_max(energy_mj, ts),"
        " count(*) FROM read_parquet($1) WHERE gpu = 5 AND ts < TIMESTAMPTZ '2025-01-02 01:00:00+00'"
        " GROUP BY ALL ORDER BY h",
        [raw],
    ).fetchall()
    got = con.execute(
        "SELECT gpu, ts, util_gpu_pct_min, util_gpu_pct_max, util_gpu_pct_mean, util_gpu_pct_last,"
        " energy_mj_first, energy_mj_last, samples FROM read_parquet($1) WHERE gpu = 5 ORDER BY ts",
        [hourly],
    ).fetchall()
    assert len(got) == 25
    assert [g[2:] for g in got] == [e[2:] for e in expect]


def test_grace_period_keeps_superseded_files_until_it_ends(tmp_path: Path) -> None:
    store = tmp_path / "s"
    writer = StoreWriter(store, flush_interval_s=600, compaction="inline", grace_s=3600)
    write_ticks(writer, 0, 80, 60_000)
    manifest = writer.live.current
    assert manifest.doomed, "the compacted segments are doomed, not deleted"
    for path, _after in manifest.doomed:
        assert (store / path).exists()
    assert writer.live.purge(now_s=manifest.doomed[-1][1] + 1) == len(manifest.doomed)
    assert not writer.live.current.doomed
    writer.close()


def test_retention_drops_whole_files_past_their_age(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with StoreWriter(
        store, flush_interval_s=600, compaction="inline", grace_s=0, retention_ms={"gpu": 2 * 3_600_000}
    ) as writer:
        write_ticks(writer, 0, 5 * 60, 60_000)
    manifest = read_manifest(store)
    assert min(f.min_ts for f in manifest.of("gpu")) >= T0 + 2 * 3_600_000
    assert min(f.min_ts for f in manifest.of("gpu_1m")) == T0, "rollups keep their own, longer retention"


def test_reopen_removes_temp_and_unpublished_files_and_continues(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with StoreWriter(store, flush_interval_s=10, compaction="off") as writer:
        write_ticks(writer, 0, 20)
    day = store / "gpu" / "day=2025-01-01"
    (day / "seg-crashed.parquet.tmp").write_bytes(b"PAR1 half")
    (day / "seg-never-published.parquet").write_bytes(b"PAR1")
    with StoreWriter(store, flush_interval_s=10, compaction="off") as writer:
        assert not (day / "seg-crashed.parquet.tmp").exists()
        assert not (day / "seg-never-published.parquet").exists()
        writer.append(frame(5))  # older than what is sealed: dropped, not duplicated
        write_ticks(writer, 20, 30)
    manifest = read_manifest(store)
    assert sum(f.rows for f in manifest.of("gpu")) == 30 * GPUS


def test_unknown_table_is_refused(tmp_path: Path) -> None:
    from storage.frame import Frame

    with StoreWriter(tmp_path / "s", compaction="off") as writer:
        good = frame(0)
        with pytest.raises(ValueError, match="unknown table"):
            writer.append(Frame(good.ts_ms + 1, {"gpus": good.batches["gpu"]}))


def test_host_sampler_rows_fit_the_host_schema(tmp_path: Path) -> None:
    sampler = HostSampler(tmp_path)
    batch = sampler.sample(T0)
    assert batch.schema.equals(HOST)
    row = batch.to_pylist()[0]
    assert row["host"] == socket.gethostname()
    assert 0 <= row["cpu_util_q4"] <= Q4_SCALE
    assert 0 < row["mem_available_kib"] <= row["mem_total_kib"]
    assert 0 <= row["disk_free_mib"] <= row["disk_total_mib"]
    assert sampler.poll(T0).batches["host"].num_rows == 1


def test_a_row_whose_keys_and_time_are_held_is_refused_and_counted(tmp_path: Path) -> None:
    """The writer's last line of defence: a second frame for one tick, and a repeat inside a frame."""
    root = tmp_path / "store"
    ts = 1_700_000_000_000
    with StoreWriter(root, compaction="inline") as writer:
        writer.store(gpu_rows(ts, [0, 1]))
        writer.store(gpu_rows(ts, [1, 2]))  # gpu 1 again at the same ts: refused; gpu 2 is new
        writer.store(gpu_rows(ts + 1000, [3, 3]))  # a repeat within one frame
        late = gpu_rows(ts, [0, 5])  # the poller's old bug: tick ts's rows inside the next frame
        writer.store(Frame(ts + 2000, late.batches))
        assert writer.status.duplicate_rows == 3
    assert_no_duplicate_rows(root)
    with StoreReader(root) as reader:
        got = reader.sql("SELECT epoch_ms(ts) AS t, gpu FROM gpu ORDER BY t, gpu").to_pylist()
    assert [(r["t"] - ts, r["gpu"]) for r in got] == [(0, 0), (0, 1), (0, 2), (0, 5), (1000, 3)]


def gpu_rows(ts_ms: int, gpus: list[int]) -> Frame:
    n = len(gpus)
    columns = {
        "ts": [ts_ms] * n,
        "gpu": gpus,
        "uuid": [f"GPU-{g}" for g in gpus],
        "tray": [1] * n,
        "state": [0] * n,
    }
    return Frame(ts_ms, {"gpu": batch_from_columns("gpu", columns)})
