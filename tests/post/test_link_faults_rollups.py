"""Link faults over a window that spans a compacted hour (read through its 1 min rollups) and the open hour.

monitor.report_links narrows the exact lag() query to the links and minutes that may hold a fault; one
it missed would vanish from the report. The faults here are placed by hand, so the expected links and
onsets are known without the code under test: a link erring in the compacted hour, one going down
there (no errors), one erring in the open hour, and two that must not count (a counter restart to 0,
and growth below the alert rule's three samples in 60 s).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from monitor.report_links import LINK_ERRORS, fault_minutes, link_faults
from monitor.timespec import Window
from storage import counter_rates
from storage.frame import Frame, batch_from_columns
from storage.reader import StoreReader
from storage.rollups import ROLLUP_STEPS, ROLLUP_TABLES, rollup_name, rollup_schema
from storage.schemas import GROWTH_COUNTS
from storage.writer import StoreWriter
from tests.post.store_fixtures import raw_rows, write_store
from tests.storage.synth import T0, gpu_batch

STEP_MS = 5_000
TICKS = 80 * 60_000 // STEP_MS  # the hour T0 .. T0+1h compacted, 20 minutes open after it
GPUS, LINKS = 4, 18
ERRING = {(1, 3): ("symbol_errors", 100), (0, 0): ("recovery", 850), (2, 8): ("rx_errors", 300)}
"""(gpu, link) -> (counter, first tick it grows); (2, 8) grows at two samples only."""
DOWN = ((3, 11), 400)
RESTART = ((2, 7), 500)
JUMPING = (1, 5)
"""rx_errors jumps by 50 every 70 s (14 ticks): never two growth samples in a minute, so never the rule's
three in 60 s, though every minute's increase is 50."""


def _errors(gpu: int, link: int, column: str, tick: int) -> int:
    value = 5
    if (gpu, link) == RESTART[0] and column == "rx_errors":
        return 0 if tick >= RESTART[1] else 9  # a restart to zero: no new errors
    if (gpu, link) == JUMPING and column == "rx_errors":
        return value + 50 * (tick // 14)
    counter, start = ERRING.get((gpu, link), ("", 0))
    if column == counter and tick >= start:
        grows = 2 if (gpu, link) == (2, 8) else 4
        value += min(tick - start + 1, grows)
    return value


def _frame(tick: int) -> Frame:
    ts = T0 + tick * STEP_MS
    keys = [(g, k) for g in range(GPUS) for k in range(LINKS)]
    columns: dict[str, list] = {
        "ts": [ts] * len(keys),
        "gpu": [g for g, _ in keys],
        "link": [k for _, k in keys],
        "state": [0 if (g, k) == DOWN[0] and tick == DOWN[1] else 1 for g, k in keys],
        "tx_kib": [tick * 1000] * len(keys),
        "rx_kib": [tick * 1000] * len(keys),
    }
    for c in ("rx_errors", "symbol_errors", "recovery", "recovery_failed"):
        columns[c] = [_errors(g, k, c, tick) for g, k in keys]
    nvlink = batch_from_columns("nvlink", columns)
    assert nvlink.schema.field("state").type == pa.int8()
    return Frame(ts, {"gpu": gpu_batch(ts, tick, GPUS), "nvlink": nvlink})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("links") / "store", (_frame(tick) for tick in range(TICKS)))


@pytest.fixture(scope="module")
def two_hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same rack over two compacted hours and 20 open minutes: (1, 3) errs and (3, 11) goes down in
    the first hour, (0, 0) errs in the second, which is quiet for the other two."""
    ticks = TICKS + 60 * 60_000 // STEP_MS
    return write_store(tmp_path_factory.mktemp("links_2h") / "store", (_frame(tick) for tick in range(ticks)))


@pytest.fixture(scope="module")
def raw_tail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rack with two more links erring in the last minutes: (2, 9) only in the newest minute, which no
    rollup holds yet (raw rows), and (3, 2) across the last rolled minute and that one."""
    erring = ERRING | {(2, 9): ("rx_errors", TICKS - 10), (3, 2): ("symbol_errors", TICKS - 14)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules[__name__], "ERRING", erring)
        root = tmp_path_factory.mktemp("links_raw_tail") / "store"
        return write_store(root, (_frame(tick) for tick in range(TICKS)))


@pytest.fixture(scope="module")
def store_before_errors_grew(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same rack written by a compactor whose nvlink rollups lack `errors_grew` (as before it existed)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delitem(GROWTH_COUNTS, "nvlink")
        for step in ROLLUP_STEPS:
            patch.setitem(ROLLUP_TABLES, rollup_name("nvlink", step), rollup_schema("nvlink"))
        root = tmp_path_factory.mktemp("links_old") / "store"
        return write_store(root, (_frame(tick) for tick in range(TICKS)))


def test_links_erring_or_down_in_rollups_and_raw_rows_are_found(store: Path) -> None:
    window = Window(T0 + 30_500, T0 + (TICKS - 3) * STEP_MS + 700)
    with StoreReader(store) as reader:
        assert reader.manifest.of("nvlink_1m"), "the first hour must be compacted"
        found = link_faults(reader, window)
    got = {(f["gpu"], f["link"]): (f["onset_ms"], f["down_ms"]) for f in found}
    at = lambda tick: T0 + tick * STEP_MS  # noqa: E731
    # Growth counts from the first sample whose counter rose: the first tick of the run.
    assert got == {
        (1, 3): (at(100), None),
        (3, 11): (at(400), at(400)),
        (0, 0): (at(850), None),
    }
    errors = {(f["gpu"], f["link"]): f["errors"] for f in found}
    assert errors[(1, 3)]["symbol_errors"] == 4 and errors[(0, 0)]["recovery"] == 4


def _step(value: int, previous: int) -> int:
    """Prometheus' counter step: a fall means a restart from zero, so the new value is the increase."""
    return value - previous if value >= previous else value


def test_errors_grew_counts_each_minutes_samples_whose_error_counters_grew(store: Path) -> None:
    # Independent: the raw rows, grouped by link and minute in Python, each sample against the one before
    # it in the same minute (the minute's first against the minute before is the reader's business).
    minutes: dict[tuple[int, int, int], list[dict]] = {}
    for r in sorted(raw_rows(store, "nvlink", T0, T0 + 3_600_000 - 1), key=lambda r: r["t"]):
        minutes.setdefault((r["gpu"], r["link"], r["t"] // 60_000 * 60_000), []).append(r)
    expected = {
        key: sum(any(_step(b[c], a[c]) > 0 for c in LINK_ERRORS) for a, b in itertools.pairwise(samples))
        for key, samples in minutes.items()
    }
    jumps = [n for (g, k, _), n in expected.items() if (g, k) == JUMPING]
    assert max(expected.values()) == 4 and sum(jumps) > 40 and max(jumps) == 1
    with StoreReader(store) as reader:
        rel = reader.relation("nvlink_1m", T0, T0 + 3_600_000 - 1)
        got = {
            (g, k, m): n
            for g, k, m, n in reader.rows(f"SELECT gpu, link, epoch_ms(ts), errors_grew FROM {rel}")
        }
    assert got == expected


def test_a_link_whose_errors_jump_in_single_samples_is_not_read_raw(
    store: Path, store_before_errors_grew: Path
) -> None:
    window = Window(T0 + 30_500, T0 + (TICKS - 3) * STEP_MS + 700)
    compacted = Window(T0, T0 + 3_600_000 - 1)  # rollups only: the narrowing is theirs
    with StoreReader(store) as reader:
        assert JUMPING not in (fault_minutes(reader, compacted, 3) or {})
        found = {(f["gpu"], f["link"]) for f in link_faults(reader, window)}
    with StoreReader(store_before_errors_grew) as reader:
        assert JUMPING in (fault_minutes(reader, compacted, 3) or {})  # `_inc` says 50: read raw
        found_before = {(f["gpu"], f["link"]) for f in link_faults(reader, window)}
    assert found == found_before == {(1, 3), (3, 11), (0, 0)}


def test_an_hour_whose_first_parts_were_rolled_before_errors_grew_closes_and_reads(
    tmp_path: Path, store: Path
) -> None:
    # A recorder upgraded mid-hour: the open hour's rollup parts so far lack the column, the close keeps
    # their buckets (conform: NULL there) beside new ones, and the reader's fallback covers the NULLs.
    root = tmp_path / "store"
    options = {"compaction": "inline", "flush_interval_s": 60, "grace_s": 0, "merge_segments": 2}
    with pytest.MonkeyPatch.context() as patch:
        patch.delitem(GROWTH_COUNTS, "nvlink")
        for step in ROLLUP_STEPS:
            patch.setitem(ROLLUP_TABLES, rollup_name("nvlink", step), rollup_schema("nvlink"))
        with StoreWriter(root, **options) as writer:
            for tick in range(300):
                writer.append(_frame(tick))
    with StoreWriter(root, **options) as writer:
        for tick in range(300, TICKS):
            writer.append(_frame(tick))
        writer.compact()
    window = Window(T0 + 30_500, T0 + (TICKS - 3) * STEP_MS + 700)
    with StoreReader(root) as reader:
        assert any(f.level == "hour" and f.min_ts == T0 for f in reader.manifest.of("nvlink_1m"))
        rel = reader.relation("nvlink_1m", T0, T0 + 3_600_000 - 1)
        (unknown, known), *_ = reader.rows(
            f"SELECT count(*) - count(errors_grew), count(errors_grew) FROM {rel}"
        )
        found = {(f["gpu"], f["link"]): f["onset_ms"] for f in link_faults(reader, window)}
    assert unknown > 0 and known > 0
    with StoreReader(store) as reader:
        assert found == {(f["gpu"], f["link"]): f["onset_ms"] for f in link_faults(reader, window)}


def test_a_store_written_before_errors_grew_exports_and_reports_the_same(
    tmp_path: Path, store_before_errors_grew: Path
) -> None:
    # The export cuts the rollup files at its window's edges into the current schema (errors_grew
    # NULL there), and the bundle reports what the store does.
    from monitor.export import export

    window = Window(T0 + 30_500, T0 + (TICKS - 30) * STEP_MS + 700)
    export(store_before_errors_grew, tmp_path / "bundle", window, with_report=False)
    with StoreReader(store_before_errors_grew) as reader:
        want = link_faults(reader, window)
    with StoreReader(tmp_path / "bundle") as bundle:
        assert bundle.manifest.of("nvlink_1m")
        assert link_faults(bundle, window) == want
    assert {(f["gpu"], f["link"]) for f in want} == {(1, 3), (3, 11), (0, 0)}


def test_a_bundle_whose_first_hour_was_cut_reports_its_faults(tmp_path: Path, two_hours: Path) -> None:
    # The bundle's first hour is cut, so it has no 1 h bucket to say whether that hour was quiet: its
    # minutes must be read, not dropped because the quiet second hour beside it has a bucket.
    from monitor.export import export

    window = Window(T0 + 30_500, T0 + (TICKS + 700) * STEP_MS + 700)
    export(two_hours, tmp_path / "bundle", window, with_report=False)
    with StoreReader(two_hours) as reader:
        assert len({f.min_ts for f in reader.manifest.of("nvlink_1h")}) == 2
        want = link_faults(reader, window)
    with StoreReader(tmp_path / "bundle") as bundle:
        assert {f.min_ts for f in bundle.manifest.of("nvlink_1h")} == {T0 + 3_600_000}
        got = link_faults(bundle, window)
    at = lambda tick: T0 + tick * STEP_MS  # noqa: E731
    onsets = {(f["gpu"], f["link"]): (f["onset_ms"], f["down_ms"]) for f in got}
    assert onsets == {(1, 3): (at(100), None), (3, 11): (at(400), at(400)), (0, 0): (at(850), None)}
    assert got == want


def test_faults_in_minutes_no_rollup_holds_yet_are_found(raw_tail: Path) -> None:
    # The newest minute is counted from raw rows: a link that grew in three samples there, and one whose
    # three samples straddle the last rolled minute and it, must both be read and found.
    window = Window(T0 + 30_500, T0 + (TICKS - 1) * STEP_MS + 700)
    at = lambda tick: T0 + tick * STEP_MS  # noqa: E731
    with StoreReader(raw_tail) as reader:
        rolled = counter_rates.rolled_bounds(reader.manifest, "nvlink")["1m"]
        assert at(TICKS - 14) < rolled <= at(TICKS - 12) < at(TICKS - 10)  # (2, 9) raw; (3, 2) across
        got = {(f["gpu"], f["link"]): (f["onset_ms"], f["down_ms"]) for f in link_faults(reader, window)}
    assert got == {
        (1, 3): (at(100), None),
        (3, 11): (at(400), at(400)),
        (0, 0): (at(850), None),
        (2, 9): (at(TICKS - 10), None),
        (3, 2): (at(TICKS - 14), None),
    }
