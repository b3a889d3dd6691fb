"""bench/make_long_store.py: an N-hour store replicated from a short one is a store the real code made.

The expected figures come from the source store (rows per copy, the source's own counter rises), not
from the script: each copy holds the source's rows shifted by whole hours, counters rise across every
seam (no reset), the compactor has merged the day, and report, query and replay read the result.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.make_long_store import make_long_store
from collectors.rack import GPUS
from monitor.backfill import backfill
from monitor.export import export
from monitor.parquet_splice import SpliceRefused
from monitor.replay import FrameLoader, load_ticks
from monitor.report_html import render_report
from monitor.timespec import Window
from storage.layout import HOUR_MS, read_manifest
from storage.reader import StoreReader
from storage.schemas import TABLES
from storage.sql_text import ts_literal
from tests.post.conftest import END_S, SEED, monitor
from tests.post.test_export import assert_same_page

SOURCE_S = 20
HOURS = 3


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("long")
    source = root / "source"
    backfill(source, SOURCE_S, scenario="steady", seed=SEED, end_s=END_S)
    long = root / "long"
    make_long_store(source, long, HOURS, log=lambda _: None)
    return source, long


def test_each_hour_holds_the_sources_rows_shifted_by_whole_hours(stores: tuple[Path, Path]) -> None:
    source, long = stores
    with StoreReader(source) as src, StoreReader(long) as dst:
        src_ticks = sorted(t for (t,) in src.rows("SELECT DISTINCT epoch_ms(ts) FROM gpu"))
        dst_ticks = sorted(t for (t,) in dst.rows("SELECT DISTINCT epoch_ms(ts) FROM gpu"))
        assert len(src_ticks) == SOURCE_S
        shift = dst_ticks[0] - src_ticks[0]
        expected = [t + shift + k * HOUR_MS for k in range(HOURS) for t in src_ticks]
        assert dst_ticks == expected
        assert dst_ticks[-1] % 86_400_000 == 86_400_000 - 1000  # the copies end with their UTC day
        for table in TABLES:
            count = f"SELECT count(*) FROM {table}"
            assert dst.rows(count)[0][0] == HOURS * src.rows(count)[0][0], table


def test_counters_rise_across_every_seam(stores: tuple[Path, Path]) -> None:
    source, long = stores
    query = (
        "SELECT gpu, link, min(tx_kib - prev) FROM (SELECT gpu, link, tx_kib, "
        "lag(tx_kib) OVER (PARTITION BY gpu, link ORDER BY ts) AS prev FROM nvlink) GROUP BY ALL"
    )
    rise = "SELECT gpu, link, max(tx_kib) - min(tx_kib) FROM nvlink GROUP BY ALL"
    with StoreReader(source) as src, StoreReader(long) as dst:
        assert min(r[2] for r in src.rows(query)) >= 0  # the source has no reset to repeat
        steps = dst.rows(query)
        assert len(steps) == GPUS * 18 and min(r[2] for r in steps) >= 0
        src_rise = {(g, link): r for g, link, r in src.rows(rise)}
        # Over three copies a link's counter rises by three source rises and two seam steps.
        for g, link, total in dst.rows(rise):
            assert total >= HOURS * src_rise[(g, link)]
            assert total <= HOURS * src_rise[(g, link)] * (SOURCE_S + 1) / (SOURCE_S - 1) + 1


def test_the_compactor_made_hour_rollups_and_the_day_file(stores: tuple[Path, Path]) -> None:
    _, long = stores
    manifest = read_manifest(long)
    levels = {(f.table, f.level) for f in manifest.files}
    for table in ("gpu", "nvlink", "serving_hist", "gpu_1m", "nvlink_1h"):
        assert (table, "day") in levels, table
    assert {f.level for f in manifest.files} == {"day"}
    assert not manifest.doomed or all(not (long / p).exists() for p, _ in manifest.doomed)


def test_report_query_and_replay_read_it(stores: tuple[Path, Path]) -> None:
    _, long = stores
    done = monitor("report", "--store", str(long), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)
    done = monitor("query", "--store", str(long), "SELECT count(DISTINCT gpu) AS n FROM gpu")
    assert done.returncode == 0 and str(GPUS) in done.stdout, done.stderr
    with StoreReader(long) as reader:
        ticks = load_ticks(reader)
        assert len(ticks) == HOURS * SOURCE_S
        frames = FrameLoader(reader).frames(ticks[SOURCE_S - 1 : SOURCE_S + 1])
    assert [f.batches["gpu"].num_rows for f in frames] == [GPUS, GPUS]


def test_a_window_that_cuts_the_day_file_holds_exactly_its_rows(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    # Ten seconds into the first hour's copy to ten seconds before the last one's end: the day file's
    # middle band is copied as bytes, the bands at both edges are cut row by row, each its own file
    # (monitor.export_cut.cut_jobs: the two run on both cores).
    _, long = stores
    window, out = _export_cutting_the_day_file(long, tmp_path / "bundle")
    with StoreReader(out) as bundle:
        # report.html was made from the store's day file and rollups while the files were cut: it must
        # be the page the bundle's own rows (cut rollups, edge files) give.
        assert_same_page((out / "report.html").read_text(), render_report(bundle, window, title=long.name))
    done = monitor("report", "--store", str(out), "--format", "json")
    assert done.returncode == 0, done.stderr


def test_a_file_that_cannot_be_spliced_is_re_encoded_with_exactly_its_rows(
    stores: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where parquet_splice refuses a file (a footer it cannot rewrite), its whole row groups are
    re-encoded instead, in their own job: the bundle still holds exactly the window's rows."""
    import monitor.export_cut as export_cut

    def refuse(*_: object) -> None:
        raise SpliceRefused("a page index")

    monkeypatch.setattr(export_cut, "copy_whole", refuse)
    _, long = stores
    _export_cutting_the_day_file(long, tmp_path / "bundle")  # `cut` re-encoded here, not spliced


def _export_cutting_the_day_file(long: Path, target: Path) -> tuple[Window, Path]:
    """Export ten seconds into the long store's first hour to ten seconds before its end: the day file's
    middle as one `cut` file, each edge band its own; the bundle holds exactly the window's rows."""
    with StoreReader(long) as reader:
        lo, hi = reader.time_range("gpu")
    window = Window(lo + 10_000, hi - 10_000)
    out = export(long, target, window).out
    files = {Path(f.path).name.split("-")[0] for f in read_manifest(out).files if f.table == "nvlink"}
    assert files == {"cut", "edge", "edge1"}, files
    within = f"ts >= {ts_literal(window.since_ms)} AND ts <= {ts_literal(window.until_ms)}"
    with StoreReader(long) as source, StoreReader(out) as bundle:
        for table in TABLES:
            want = source.rows(f"SELECT count(*) FROM {table} WHERE {within}")[0][0]
            assert bundle.rows(f"SELECT count(*) FROM {table}")[0][0] == want, table
            outside = bundle.rows(f"SELECT count(*) FROM {table} WHERE NOT ({within})")[0][0]
            assert outside == 0, table
    return window, out
