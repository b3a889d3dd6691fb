"""The reader's cache of decoded rollup files and condensed span pieces (storage/rollup_files.py) never
answers from an old file: one long-lived reader asked many windows, and again after more hours land,
agrees with a loop over the raw rows; a file replaced under its own name is read again.

Expected values come from the per-series loop over raw rows in test_rate_vs_raw_loop (plain SQL rows,
not storage/increase.py, counter_rates or pieces).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.frame import Frame, batch_from_columns
from storage.layout import HOUR_MS
from storage.reader import StoreReader
from storage.rollup_files import RollupFiles
from storage.writer import StoreWriter
from tests.storage.synth import T0
from tests.storage.test_rate_vs_raw_loop import TICK_MS, TICKS, as_dict, expected, write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache") / "store"
    write_store(root, nulls=True)
    return root


@pytest.fixture(scope="module")
def reader(store: Path) -> StoreReader:
    with StoreReader(store) as r:
        yield r


def agree(reader: StoreReader, store: Path, since: int, until: int, step: int | None) -> None:
    got = as_dict(reader.rate("gpu", "energy_mj", since, until, step_ms=step).to_pylist(), step)
    want = expected(store, since, until, step)
    assert got.keys() == want.keys()
    for key, (inc, sec) in want.items():
        assert math.isclose(got[key][0], inc, rel_tol=1e-12) and got[key][1] == pytest.approx(sec)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    since_tick=st.integers(0, TICKS - 2),
    length_ms=st.integers(1, TICKS * TICK_MS),
    step=st.sampled_from([None, None, 60_000, HOUR_MS]),
)
def test_one_reader_asked_many_windows_agrees_with_the_raw_loop(
    reader: StoreReader, store: Path, since_tick: int, length_ms: int, step: int | None
) -> None:
    since = T0 + since_tick * TICK_MS
    agree(reader, store, since, since + length_ms, step)
    agree(reader, store, since, since + length_ms, step)  # the second time from the cache


def test_hours_that_land_after_the_cache_filled_are_counted(tmp_path: Path) -> None:
    root = tmp_path / "store"
    write_store(root, nulls=False)
    with StoreReader(root) as reader:
        agree(reader, root, T0 + 30_000, T0 + 2 * HOUR_MS - 1, None)
        reads = reader.rollup_files.reads
        agree(reader, root, T0 + 30_000, T0 + 2 * HOUR_MS - 1, None)
        assert reader.rollup_files.reads == reads  # asked again: nothing decoded again
        # Two more hours, compacted with their rollups, into the store the reader has open.
        with StoreWriter(root, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
            for tick in range(TICKS, TICKS + 2 * 360):
                ts = T0 + tick * TICK_MS
                columns = {"ts": [ts] * 3, "gpu": [0, 1, 2], "uuid": ["G0", "G1", "G2"], "tray": [1] * 3}
                columns |= {"state": [0] * 3, "energy_mj": [10**7 + tick * 7, 5 * tick, 10**6 - tick]}
                writer.append(Frame(ts, {"gpu": batch_from_columns("gpu", columns)}))
        for since, until in ((T0 + 30_000, T0 + 4 * HOUR_MS - 1), (T0 + 30_000, T0 + 2 * HOUR_MS - 1)):
            agree(reader, root, since, until, None)
            agree(reader, root, since, until, 60_000)


def test_a_file_replaced_under_its_name_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"ts": pa.array([0], pa.timestamp("ms", tz="UTC")), "v": [1]}), path)
    cache = RollupFiles()
    assert cache.columns(path, ["ts", "v"]).column("v").to_pylist() == [1]  # type: ignore[union-attr]
    fresh = tmp_path / "r.parquet.new"
    pq.write_table(pa.table({"ts": pa.array([0], pa.timestamp("ms", tz="UTC")), "v": [2]}), fresh)
    os.replace(fresh, path)  # same name and size, another inode and mtime
    assert cache.columns(path, ["ts", "v"]).column("v").to_pylist() == [2]  # type: ignore[union-attr]


def test_the_cache_keeps_within_its_bound(tmp_path: Path) -> None:
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"r{i}.parquet")
        pq.write_table(pa.table({"ts": pa.array(range(1000), pa.timestamp("ms", tz="UTC"))}), paths[-1])
    one = pq.read_table(paths[0]).nbytes
    cache = RollupFiles(max_bytes=2 * one)
    for p in paths:
        cache.columns(p, ["ts"])
    cache.columns(paths[-1], ["ts"])  # still held
    assert cache.reads == 4
    cache.columns(paths[0], ["ts"])  # dropped for the newer ones: read again
    assert cache.reads == 5
    assert cache.columns(tmp_path / "r1.parquet", ["nope"]) is None  # a missing column


def minute_ends(store: Path, since: int, until: int) -> dict[tuple[int, int], tuple[int, int]]:
    """(gpu, minute start) -> (first, last) energy reading in that minute, by a loop over the raw rows."""
    with StoreReader(store) as reader:
        rows = reader.rows(
            f"SELECT gpu, epoch_ms(ts), energy_mj FROM gpu WHERE energy_mj IS NOT NULL "
            f"AND epoch_ms(ts) BETWEEN {since} AND {until + 59_999} ORDER BY gpu, ts"
        )
    out: dict[tuple[int, int], tuple[int, int]] = {}
    for gpu, t, value in rows:
        key = (gpu, t // 60_000 * 60_000)
        if since <= key[1] <= until:
            out[key] = (out.get(key, (value, value))[0], value)
    return out


def test_rollup_buckets_from_the_cache_match_the_raw_rows_and_follow_new_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    write_store(root, nulls=True)

    def buckets(reader: StoreReader, relation: str) -> dict[tuple[int, int], tuple[int, int]]:
        got = reader.rows(f"SELECT gpu, epoch_ms(ts), energy_mj_first, energy_mj_last FROM {relation}")
        return {(g, t): (a, b) for g, t, a, b in got if a is not None}

    with StoreReader(root) as reader:
        early, _ = reader.rollup("gpu", "1m", T0, T0 + HOUR_MS - 1)
        late, _ = reader.rollup("gpu", "1m", T0 + HOUR_MS, T0 + 2 * HOUR_MS - 1)
        # Both relations asked after both were made: neither names the other's rows.
        assert buckets(reader, early) == minute_ends(root, T0, T0 + HOUR_MS - 1)
        assert buckets(reader, late) == minute_ends(root, T0 + HOUR_MS, T0 + 2 * HOUR_MS - 1)
        with StoreWriter(root, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
            for tick in range(TICKS, TICKS + 2 * 360):
                ts = T0 + tick * TICK_MS
                columns = {"ts": [ts] * 3, "gpu": [0, 1, 2], "uuid": ["G0", "G1", "G2"], "tray": [1] * 3}
                columns |= {"state": [0] * 3, "energy_mj": [10**7 + tick, 5 * tick, 10**6 - tick]}
                writer.append(Frame(ts, {"gpu": batch_from_columns("gpu", columns)}))
        whole, _ = reader.rollup("gpu", "1m", T0, T0 + 4 * HOUR_MS - 1)
        assert buckets(reader, whole) == minute_ends(root, T0, T0 + 4 * HOUR_MS - 1)


def test_a_window_inside_a_long_file_decodes_only_the_row_groups_it_meets(tmp_path: Path) -> None:
    """A rollup day file holds 10 h per row group: an hour inside it reads its band's groups, and the
    rows are those a filter over the whole file gives."""
    path, bare = tmp_path / "day.parquet", tmp_path / "bare.parquet"
    ts = pa.array(range(0, 30_000, 500), pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    table = pa.table({"ts": ts, "v": list(range(60))})
    pq.write_table(table, path, row_group_size=20)  # groups of ts 0-9.5 s, 10-19.5 s, 20-29.5 s
    pq.write_table(table, bare, row_group_size=20, write_statistics=False)
    cache = RollupFiles()
    assert cache.groups_within(path, 12_000, 15_000) == (1,)
    assert cache.groups_within(path, 9_500, 10_000) == (0, 1)
    assert cache.groups_within(path, 0, 29_500) is None  # every group: the whole file's entry
    assert cache.groups_within(bare, 12_000, 15_000) is None  # no statistics: read it all
    micros = tmp_path / "us.parquet"  # statistics in another unit than the store's ms
    in_micros = table.set_column(0, "ts", ts.cast(pa.timestamp("us", tz="UTC")))
    pq.write_table(in_micros, micros, row_group_size=20)
    assert cache.groups_within(micros, 12_000, 15_000) == (1,)
    for since, until in ((12_000, 15_000), (9_500, 10_000), (0, 29_500), (40_000, 50_000)):
        want = [v for v in range(60) if since <= v * 500 <= until]
        for file in (path, bare):
            got = cache.rows([file], ["ts", "v"], since, until)
            assert got is not None and got.column("v").to_pylist() == want
