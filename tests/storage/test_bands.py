"""Banded compaction: compacted files sorted by (time band, keys, ts), row groups inside one band each,
so short windows read a band's row groups; reads return the same rows as before, and stores compacted
before bands existed still read, merge and can be rewritten."""

from __future__ import annotations

import itertools
import random
import re
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.bands import RAW_BAND_MS, table_band_ms, table_layout, table_schema
from storage.layout import HOUR_MS, FileEntry, read_manifest
from storage.reader import StoreReader
from storage.row_order import banded_chunks, in_order, merged_chunks
from storage.segments import write_atomic
from storage.writer import StoreWriter
from tests.storage.synth import GPUS, T0, frame

STEP_MS = 60_000
"""One tick a minute keeps a day of rows small; a raw band then holds 10 ticks per GPU."""
DAY_TICKS = 24 * 60


def write_ticks(writer: StoreWriter, first: int, last: int) -> None:
    for tick in range(first, last):
        writer.append(frame(tick, STEP_MS))


def epoch_ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def row_group_spans(path: Path) -> list[tuple[int, int]]:
    """(min ts, max ts) of each row group, from the file's footer."""
    meta = pq.ParquetFile(path).metadata
    ts = meta.schema.names.index("ts")
    spans = []
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(ts).statistics
        spans.append((epoch_ms(stats.min), epoch_ms(stats.max)))
    return spans


def assert_banded(root: Path, entry: FileEntry) -> None:
    """Every row group lies in one band, bands ascend, and rows are (keys, ts) sorted inside a group."""
    band = table_band_ms(entry.table)
    spans = row_group_spans(root / entry.path)
    assert all(lo // band == hi // band for lo, hi in spans), (entry.path, spans)
    starts = [lo // band for lo, _ in spans]
    assert starts == sorted(starts)
    keys = table_layout(entry.table)[0]
    order = [(k, "ascending") for k in (*keys, "ts")]
    parquet = pq.ParquetFile(root / entry.path)
    for rg in range(parquet.num_row_groups):
        rows = parquet.read_row_group(rg)
        assert rows.equals(rows.sort_by(order)), (entry.path, rg)


def expected_gpu_rows(since_ms: int, until_ms: int) -> list[tuple[int, int, int]]:
    """(ts, gpu, energy_mj) that synth.frame wrote with since_ms <= ts <= until_ms, by ts then gpu."""
    first = -(-(since_ms - T0) // STEP_MS)
    last = (until_ms - T0) // STEP_MS
    return [(T0 + t * STEP_MS, g, t * 600_000 + g) for t in range(first, last + 1) for g in range(GPUS)]


def window_rows(reader: StoreReader, since_ms: int, until_ms: int) -> list[tuple[int, int, int]]:
    rel = reader.relation("gpu", since_ms, until_ms)
    rows = reader.sql(f"SELECT epoch_ms(ts) AS t, gpu, energy_mj FROM {rel} ORDER BY t, gpu")
    return [(r["t"], r["gpu"], r["energy_mj"]) for r in rows.to_pylist()]


@pytest.fixture(scope="module")
def day_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 h 30 min of ticks: one day file, one hour file, segments of the open hour (compacted inline)."""
    store = tmp_path_factory.mktemp("bands") / "s"
    with StoreWriter(store, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
        write_ticks(writer, 0, DAY_TICKS + 90)
    return store


def test_compacted_files_keep_each_row_group_inside_one_band(day_store: Path) -> None:
    manifest = read_manifest(day_store)
    compacted = [f for f in manifest.files if f.level in ("hour", "day")]
    assert {f.level for f in manifest.of("gpu")} == {"day", "hour", "seg"}
    for entry in compacted:
        assert_banded(day_store, entry)
    day = next(f for f in manifest.of("gpu") if f.level == "day")
    # A day of raw rows is 144 bands, each one row group: a window touching a band decodes all of
    # it anyway, and every extra group is footer that each reader parses.
    spans = row_group_spans(day_store / day.path)
    assert len(spans) == len({lo // RAW_BAND_MS for lo, _ in spans}) == DAY_TICKS * STEP_MS // RAW_BAND_MS


@pytest.mark.parametrize(
    ("since_tick", "until_tick"),
    [
        (62, 64),  # inside one band
        (65, 76),  # across a band boundary
        (55, 65),  # across an hour boundary
        (DAY_TICKS - 7, DAY_TICKS + 2),  # from the day file into the next day's hour file
        (DAY_TICKS + 58, DAY_TICKS + 89),  # from the hour file into the open hour's segments
        (0, DAY_TICKS + 89),  # everything
    ],
)
def test_window_reads_return_exactly_the_rows_written(
    day_store: Path, since_tick: int, until_tick: int
) -> None:
    since, until = T0 + since_tick * STEP_MS, T0 + until_tick * STEP_MS
    with StoreReader(day_store) as reader:
        assert window_rows(reader, since, until) == expected_gpu_rows(since, until)
        # Bounds falling between ticks select the same ticks as the ticks inside them.
        assert window_rows(reader, since - 1, until + 1) == expected_gpu_rows(since, until)


def test_duckdb_reads_only_the_row_groups_of_the_bands_a_window_touches(day_store: Path) -> None:
    since = T0 + 6 * HOUR_MS + 3 * STEP_MS  # two minutes inside one band of the day file
    with StoreReader(day_store) as reader:
        day = next(f for f in reader.manifest.of("gpu") if f.level == "day")
        rel = reader.relation("gpu", since, since + 2 * STEP_MS)
        plan = reader.con.sql(f"EXPLAIN ANALYZE SELECT * FROM {rel}").fetchall()[0][1]
    scanned = [(int(a), int(b)) for a, b in re.findall(r"Row Groups Scanned:\s*(\d+)\s*/\s*(\d+)", plan)]
    assert scanned, plan
    read, total = map(sum, zip(*scanned, strict=True))
    assert total == len(row_group_spans(day_store / day.path)) >= DAY_TICKS * STEP_MS // RAW_BAND_MS
    assert read == 1


def legacy_rewrite(writer: StoreWriter, entry: FileEntry) -> FileEntry:
    """Rewrite a compacted file the way compaction did before bands: (keys, ts), groups over all time."""
    keys, counters = table_layout(entry.table)
    rel = entry.path.replace(".parquet", "-legacy.parquet")
    schema = table_schema(entry.table)
    chunks = merged_chunks([writer.root / entry.path], schema, keys)
    new = write_atomic(
        writer.root,
        rel,
        chunks,
        table=entry.table,
        level=entry.level,
        schema=schema,
        keys=keys,
        counters=counters,
    )
    writer.live.commit([new], [entry.path])
    return new


def test_stores_compacted_before_bands_read_merge_and_rewrite(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with StoreWriter(store, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
        write_ticks(writer, 0, 3 * 60 + 5)
        hours = [f for f in writer.live.current.of("gpu") if f.level == "hour"]
        legacy = [legacy_rewrite(writer, f) for f in hours]
        spans = row_group_spans(store / legacy[0].path)
        assert len(spans) == 1 and spans[0][1] - spans[0][0] == HOUR_MS - STEP_MS, "one group spans the hour"
        with StoreReader(store) as reader:
            since, until = T0 + 20 * STEP_MS, T0 + 130 * STEP_MS
            assert window_rows(reader, since, until) == expected_gpu_rows(since, until)
        # The day merge reads legacy hour files band by band, like banded ones.
        write_ticks(writer, 3 * 60 + 5, DAY_TICKS + 5)
    manifest = read_manifest(store)
    day = next(f for f in manifest.of("gpu") if f.level == "day")
    assert day.rows == DAY_TICKS * GPUS
    assert_banded(store, day)
    with StoreReader(store) as reader:
        assert window_rows(reader, T0, T0 + DAY_TICKS * STEP_MS) == expected_gpu_rows(
            T0, T0 + DAY_TICKS * STEP_MS
        )


@pytest.mark.parametrize(
    ("level", "groups"), [("day", [200_000]), ("hour", [200_000]), ("seg", [100_000, 100_000])]
)
def test_a_compacted_chunk_is_one_row_group_and_a_segment_is_split_evenly(
    tmp_path: Path, level: str, groups: list[int]
) -> None:
    # One band of 200,000 rows, more than ROW_GROUP_ROWS (131,072): an hour or day file keeps it
    # in one group (its footer stays small), a segment splits it into two groups of even size.
    keys, counters = table_layout("processes")
    schema = table_schema("processes")
    n = 200_000
    rows = pa.table(
        {"ts": [T0] * n, "gpu": [0] * n, "pid": range(n), "name": ["python"] * n, "used_mib": [1] * n}
    ).cast(schema)
    entry = write_atomic(
        tmp_path,
        f"{level}.parquet",
        [rows],
        table="processes",
        level=level,
        schema=schema,
        keys=keys,
        counters=counters,
        thorough=False,
    )
    meta = pq.ParquetFile(tmp_path / entry.path).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == groups


def test_relayout_rewrites_legacy_files_banded_with_the_same_rows(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with StoreWriter(store, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
        write_ticks(writer, 0, 2 * 60 + 5)
        for entry in [f for f in writer.live.current.files if f.level == "hour"]:
            legacy_rewrite(writer, entry)
        before = {f.table: f.rows for f in writer.live.current.files if f.level == "hour"}
        assert writer.compactor.relayout() == len(before)
        writer.compact()  # grace 0: the superseded files go
    manifest = read_manifest(store)
    hours = [f for f in manifest.files if f.level == "hour"]
    assert {f.table: f.rows for f in hours} == before
    for entry in hours:
        assert_banded(store, entry)
    assert not any("-legacy" in f.path for f in manifest.files)
    assert {p.relative_to(store).as_posix() for p in store.rglob("*.parquet")} == {
        f.path for f in manifest.files
    }
    with StoreReader(store) as reader:
        since, until = T0, T0 + 2 * HOUR_MS + 4 * STEP_MS
        assert window_rows(reader, since, until) == expected_gpu_rows(since, until)


@pytest.mark.parametrize("arrival", ["shuffled", "in band order, shuffled inside each band"])
def test_banded_chunks_give_each_band_its_rows_sorted_by_keys_then_time(arrival: str) -> None:
    """Rows of several bands and entities: one chunk per band, oldest first, each holding exactly
    that band's rows in (gpu, ts) order; the expected order is Python's sort of the rows."""
    band_ms = 120_000
    rng = random.Random(7)
    rows = [(gpu, T0 + rng.randrange(0, 5 * band_ms), rng.random()) for gpu in range(6) for _ in range(40)]
    rng.shuffle(rows)
    if arrival != "shuffled":
        rows.sort(key=lambda r: r[1] // band_ms)
    table = pa.table(
        {
            "gpu": pa.array([r[0] for r in rows], pa.int16()),
            "ts": pa.array([r[1] for r in rows], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "value": [r[2] for r in rows],
        }
    )
    chunks = list(banded_chunks(table, ["gpu"], band_ms))
    expected = sorted(rows, key=lambda r: (r[1] // band_ms, r[0], r[1]))
    got = [
        (gpu, epoch_ms(ts), value)
        for chunk in chunks
        for gpu, ts, value in zip(*(chunk.column(c).to_pylist() for c in ("gpu", "ts", "value")), strict=True)
    ]
    assert [(g, t) for g, t, _ in got] == [(g, t) for g, t, _ in expected]
    assert sorted(v for *_, v in got) == sorted(r[2] for r in rows)
    bands = [{epoch_ms(ts) // band_ms for ts in chunk.column("ts").to_pylist()} for chunk in chunks]
    assert all(len(b) == 1 for b in bands)
    assert [b.pop() for b in bands] == sorted({r[1] // band_ms for r in rows})
    assert all(chunk.schema == table.schema for chunk in chunks)


def test_in_order_agrees_with_pythons_comparison_of_row_tuples() -> None:
    """Random small tables with many ties, in and out of order: `in_order` says what comparing each
    row tuple with the next says."""
    rng = random.Random(11)
    for trial in range(400):
        n = rng.randrange(2, 9)
        rows = sorted((rng.randrange(3), rng.randrange(3), rng.randrange(3)) for _ in range(n))
        if trial % 2:
            i = rng.randrange(n - 1)
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
        columns = [pa.chunked_array([pa.array([r[c] for r in rows], pa.int64())]) for c in range(3)]
        expected = all(a <= b for a, b in itertools.pairwise(rows))
        assert in_order(columns) is expected, rows
    # A null compares as null, not as smaller or larger: never taken for ordered.
    assert in_order([pa.array([1, 2, None, 3], pa.int64())]) is False
    assert in_order([pa.array([1, 1, 2]), pa.array([None, 5, 1], pa.int64())]) is False


def test_banded_chunks_of_rows_already_in_order_are_slices_of_them() -> None:
    """Rows read back from a banded file are in (band, keys, ts) order: the chunks are the bands'
    runs of those rows, unsorted and unchanged."""
    band_ms = 120_000
    rows = sorted((t // band_ms, gpu, t) for gpu in range(3) for t in range(T0, T0 + 3 * band_ms, 50_000))
    table = pa.table(
        {
            "gpu": pa.array([r[1] for r in rows], pa.int16()),
            "ts": pa.array([r[2] for r in rows], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        }
    )
    chunks = list(banded_chunks(table, ["gpu"], band_ms))
    assert pa.concat_tables(chunks).equals(table)
    per_band = [sum(1 for r in rows if r[0] == b) for b in sorted({r[0] for r in rows})]
    assert [c.num_rows for c in chunks] == per_band
