"""A window that starts and ends mid-file: the bundle holds exactly its rows (checked by DuckDB alone).

The store is compacted hour files with one 10-minute band per row group, so the export copies whole
row groups as bytes (monitor.parquet_splice) and re-encodes only the groups at the two edges; the
expected rows come from DuckDB reading the source files with a ts filter, no rack-monitor code.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from monitor.export import export
from monitor.parquet_splice import SpliceRefused, copy_row_groups, read_footer
from monitor.report import summarize
from monitor.thrift_compact import decode_footer, decode_footer_lazily, encode_footer
from monitor.timespec import Window
from storage.layout import read_manifest
from storage.reader import StoreReader
from storage.rollups import ROLLUP_STEPS
from storage.writer import StoreWriter
from tests.storage.synth import frame

HOUR_MS = 3_600_000
T0 = 1_735_689_600_000  # tests.storage.synth's T0, an hour boundary
STEP_MS = 5_000


@pytest.fixture(scope="module")
def hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 h 20 min of 8 GPUs and a histogram every 5 s, the two whole hours compacted (bands, rollups)."""
    root = tmp_path_factory.mktemp("hours") / "store"
    with StoreWriter(root, compaction="inline", flush_interval_s=600, grace_s=0) as writer:
        for tick in range(140 * 60_000 // STEP_MS):
            writer.append(frame(tick, STEP_MS, gpus=8, hist=True))
        writer.compact()
    levels = {e.level for e in read_manifest(root).of("gpu")}
    assert levels & {"hour", "day"}, levels
    return root


def _source_rows(store: Path, table: str, lo: int, hi: int) -> str:
    files = ", ".join(f"'{store / e.path}'" for e in read_manifest(store).of(table))
    return (
        f"SELECT * FROM read_parquet([{files}], union_by_name = true) "
        f"WHERE epoch_ms(ts) BETWEEN {lo} AND {hi}"
    )


def _bundle_rows(bundle: Path, table: str) -> str:
    return f"SELECT * FROM read_parquet('{bundle}/{table}/**/*.parquet', union_by_name = true)"


def _differ(con: duckdb.DuckDBPyConnection, a: str, b: str) -> int:
    return con.sql(f"SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))").fetchall()[0][0]


def test_mid_file_window_holds_exactly_its_rows(hours: Path, tmp_path: Path) -> None:
    since = T0 + 17 * 60_000 + 2_500  # mid-band of the first hour file
    until = T0 + 75 * 60_000 + 7_300  # mid-band of the second
    out = tmp_path / "bundle"
    result = export(hours, out, Window(since, until), with_report=False)
    con = duckdb.connect()
    for table in ("gpu", "serving_hist"):
        expected, got = _source_rows(hours, table, since, until), _bundle_rows(out, table)
        n = con.sql(f"SELECT count(*) FROM ({expected})").fetchall()[0][0]
        assert n > 0 and result.rows[table] == n
        assert _differ(con, expected, got) == 0 and _differ(con, got, expected) == 0, table
    for table in ("gpu_1m", "gpu_1h"):
        # Only buckets wholly inside the window come along.
        last = until - ROLLUP_STEPS[table.split("_")[1]] + 1
        expected = _source_rows(hours, table, since, last)
        got = (
            _bundle_rows(out, table)
            if list(out.glob(f"{table}/**/*.parquet"))
            else f"SELECT * FROM ({expected}) LIMIT 0"
        )
        assert _differ(con, expected, got) == 0 and _differ(con, got, expected) == 0, table
    # Both paths ran: whole row groups copied as bytes, edge groups re-encoded.
    names = {p.name.split("-")[0] for p in (out / "gpu").rglob("*.parquet")}
    assert names == {"cut", "edge"}, names
    # The bundle is a store the readers open unchanged, and says what the store says about the window.
    with StoreReader(out) as bundle, StoreReader(hours) as store:
        window = Window(since, until)
        lo, hi = bundle.time_range("gpu") or (0, 0)
        assert since <= lo and hi <= until
        mine, theirs = summarize(bundle, window), summarize(store, window)
    assert mine["energy"] == theirs["energy"] and mine["data"] == theirs["data"]


def test_footer_codec_round_trips_and_splices(hours: Path) -> None:
    entry = next(e for e in read_manifest(hours).of("serving_hist") if e.level in ("hour", "day"))
    path = hours / entry.path
    data = path.read_bytes()
    (size,) = struct.unpack("<I", data[-8:-4])
    footer = read_footer(path)  # row groups skipped over, decoded when taken
    assert encode_footer(footer) == data[-8 - size : -8]
    eager = decode_footer(data[-8 - size : -8])
    lazy_groups, eager_groups = (next(f[2][1] for f in fields if f[0] == 4) for fields in (footer, eager))
    assert len(lazy_groups) == len(eager_groups) > 1
    assert [lazy_groups[i] for i in range(len(lazy_groups))] == eager_groups
    source = pq.ParquetFile(path)
    keep = list(range(1, source.metadata.num_row_groups, 2))
    buf = io.BytesIO()
    rows = copy_row_groups(path, footer, keep, buf)
    copy = pq.read_table(io.BytesIO(buf.getvalue()))
    assert rows == copy.num_rows > 0 and copy.equals(source.read_row_groups(keep))


def test_a_file_with_a_page_index_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "indexed.parquet"
    pq.write_table(pa.table({"x": list(range(1000))}), path, row_group_size=100, write_page_index=True)
    with pytest.raises(SpliceRefused):
        copy_row_groups(path, read_footer(path), [1, 2], io.BytesIO())


def test_the_row_group_skipper_steps_over_every_thrift_compact_type() -> None:
    # Compact protocol type ids (thrift-compact-protocol.md): 1/2 bool, 3 i8, 4 i16, 5 i32, 6 i64, 7 double,
    # 8 binary, 9 list, 10 set, 12 struct. A field id 40 past the last forces the long form.
    inner = [[1, 5, 300], [2, 8, b"le=+Inf"], [3, 1, True]]
    group = [
        [1, 9, (12, [inner, inner])],
        [2, 3, 7],
        [3, 4, -2],
        [4, 6, 1 << 40],
        [5, 7, b"\x00" * 8],
        [6, 10, (5, [1, 2, 3])],
        [7, 9, (1, [1, 0, 1])],
        [8, 9, (8, [b"x" * 200, b"y"])],  # binary lengths past one varint byte, in a list
        [9, 9, (6, list(range(-10, 10)))],  # 20 elements: the list header's long-form size
        [10, 8, b"z" * 300],
        [47, 2, False],
        [48, 12, inner],
    ]
    footer = [[1, 5, 2], [4, 9, (12, [group, inner, group])], [5, 8, b"after the row groups"]]
    data = encode_footer(footer)
    lazy = decode_footer_lazily(data)
    groups = lazy[1][2][1]
    assert [groups[i] for i in range(len(groups))] == [group, inner, group]
    assert lazy[2] == [5, 8, b"after the row groups"] and encode_footer(lazy) == data


def test_an_edge_band_beside_a_whole_row_group_of_its_time_is_cut_without_duplicates(tmp_path: Path) -> None:
    # Row group 0 (GPU 0, 0..599 s) straddles the window's start at 300 s; row group 1 (GPU 1, from
    # 400 s: it appeared mid-band) lies wholly inside and is copied as bytes. A ts filter over the edge's
    # band would take row group 1's rows a second time, so the edge must be read by row group.
    from monitor.export_cut import cut_jobs, plan_file
    from storage.layout import FileEntry
    from storage.schemas import TABLES
    from tests.storage.synth import gpu_batch

    store = tmp_path / "store"
    path = store / "gpu" / "day.parquet"
    path.parent.mkdir(parents=True)
    t0 = 1_750_000_200_000

    def rows(gpu: int, first_s: int) -> pa.Table:
        batches = [gpu_batch(t0 + s * 1000, s, gpus=2) for s in range(first_s, 600)]
        table = pa.Table.from_batches(batches).cast(TABLES["gpu"])
        return table.filter(pa.compute.equal(table.column("gpu"), gpu))

    with pq.ParquetWriter(path, TABLES["gpu"]) as writer:
        writer.write_table(rows(0, 0))
        writer.write_table(rows(1, 400))
    entry = FileEntry("gpu", "gpu/day.parquet", "day", 600 + 200, t0, t0 + 599_000, path.stat().st_size)
    since, until = t0 + 300_000, t0 + 1_000_000
    plan = plan_file(store, entry, since, until)
    assert (plan.whole, plan.edge) == ((1,), (0,))
    out = tmp_path / "bundle"
    connect = lambda: duckdb.connect()  # noqa: E731
    written = [e for _, job in cut_jobs(store, out, plan, since, until, connect) for e in job()]
    got = pa.concat_tables(pq.read_table(out / e.path) for e in written)
    keys = sorted(zip(got.column("gpu").to_pylist(), got.column("ts").to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == 300 + 200
