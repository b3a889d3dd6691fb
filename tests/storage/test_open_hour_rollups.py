"""The open hour's 1-minute rollups: written as its segments merge into parts, only for sealed minutes,
each minute once, equal to the raw rows they summarise, and replaced by the hour file's own rollups.

A live store is read mostly in its open hour ("the last hour" of a post-mortem is about half in it), which
had no rollup until the hour closed, so its raw rows were read whole. Expected values are computed here
from the raw rows (plain SQL reads and a Python loop), not by storage.rollups.
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest

from storage import counter_rates
from storage.compactor import ROLL_LAG_MS
from storage.frame import Frame, batch_from_columns
from storage.layout import HOUR_MS, read_manifest
from storage.reader import StoreReader
from storage.writer import StoreWriter
from tests.storage.synth import T0

TICK_MS = 5_000
FLUSH_S = 35  # segments end mid-minute, so a minute is split across parts
GPUS = 3
MINUTE_MS = 60_000


def write_store(root: Path, ticks: int, merge_segments: int = 3) -> None:
    """`ticks` of GPU rows from T0: energy rising with resets, GPU 2 missing some readings, a gauge."""
    rng = random.Random(5)
    energy = [rng.randint(0, 10_000) for _ in range(GPUS)]
    options = {"compaction": "inline", "grace_s": 0, "merge_segments": merge_segments}
    with StoreWriter(root, flush_interval_s=FLUSH_S, **options) as w:
        for tick in range(ticks):
            values: list[int | None] = []
            for g in range(GPUS):
                energy[g] = rng.randint(0, 300) if rng.random() < 0.01 else energy[g] + rng.randint(0, 5000)
                values.append(None if g == 2 and tick % 41 == 7 else energy[g])
            ts = T0 + tick * TICK_MS
            columns = {"ts": [ts] * GPUS, "gpu": list(range(GPUS)), "uuid": [f"G{g}" for g in range(GPUS)]}
            columns |= {"tray": [1] * GPUS, "state": [0] * GPUS, "energy_mj": values}
            columns |= {"util_gpu_pct": [float(rng.randint(0, 100)) for _ in range(GPUS)]}
            w.append(Frame(ts, {"gpu": batch_from_columns("gpu", columns)}))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("open") / "store"
    write_store(root, ticks=(HOUR_MS + 37 * MINUTE_MS + 20_000) // TICK_MS)  # one closed hour, 37 min open
    return root


def raw_minutes(store: Path, since: int, until: int) -> dict[tuple[int, int], tuple[float, float | None]]:
    """(gpu, minute start) -> (mean util, energy increase inside the minute or None if an edge is NULL)."""
    with StoreReader(store) as reader:
        rows = reader.rows(
            f"SELECT gpu, epoch_ms(ts), util_gpu_pct, energy_mj FROM gpu "
            f"WHERE epoch_ms(ts) BETWEEN {since} AND {until} ORDER BY gpu, ts"
        )
    out: dict[tuple[int, int], tuple[float, float | None]] = {}
    for (gpu, minute), group in itertools.groupby(rows, key=lambda r: (r[0], r[1] // MINUTE_MS * MINUTE_MS)):
        got = list(group)
        inc: float | None = 0.0
        if got[0][3] is None or got[-1][3] is None:
            inc = None
        valued = [r[3] for r in got if r[3] is not None]
        for prev, cur in itertools.pairwise(valued):
            inc = None if inc is None else inc + (cur - prev if cur >= prev else cur)
        out[(gpu, minute)] = (sum(r[2] for r in got) / len(got), inc)
    return out


def part_rollups(store: Path) -> list[tuple[int, int, int]]:
    """(min_ts, max_ts, rows) of the gpu_1m files at level 'part', in time order."""
    files = [f for f in read_manifest(store).of("gpu_1m") if f.level == "part"]
    return sorted((f.min_ts, f.max_ts, f.rows) for f in files)


@pytest.fixture(scope="module")
def unmerged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same store written with merges too rare to happen in the open hour: only lagging minutes roll."""
    root = tmp_path_factory.mktemp("unmerged") / "store"
    write_store(root, ticks=(HOUR_MS + 37 * MINUTE_MS + 20_000) // TICK_MS, merge_segments=10_000)
    return root


def test_the_open_hour_has_1m_rollups_of_its_sealed_minutes_each_once(store: Path) -> None:
    parts = part_rollups(store)
    assert len(parts) == 1, parts  # each roll folds the hour's earlier buckets into its part
    assert_open_minutes_rolled_once(store)


def test_sealed_minutes_roll_between_merges_once_they_lag(unmerged: Path) -> None:
    """A writer that seals often and merges rarely still rolls each sealed minute within ROLL_LAG_MS
    (plus a minute and a seal) of the seal, each once, and leaves nothing due (no child every seal)."""
    manifest = read_manifest(unmerged)
    assert not [f for f in manifest.of("gpu") if f.level == "part"]  # no merge happened
    assert len(part_rollups(unmerged)) == 1  # a roll every couple of minutes, each folding the last
    bound = counter_rates.rolled_bounds(manifest, "gpu")["1m"]
    behind = (manifest.sealed_through_ms + 1) // MINUTE_MS * MINUTE_MS - bound
    assert behind < ROLL_LAG_MS + MINUTE_MS + FLUSH_S * 1000
    assert_open_minutes_rolled_once(unmerged)
    writer = StoreWriter(unmerged, compaction="off", merge_segments=10_000)
    with writer:
        assert not writer.compactor.due()
    since = T0 + HOUR_MS + 61_500  # mid-minute, in the open hour
    assert_rate_is_raw_sum(unmerged, since, manifest.sealed_through_ms)


def assert_open_minutes_rolled_once(store: Path) -> None:
    """The open hour's 1m buckets: only wholly sealed minutes, none twice, each equal to its raw rows."""
    manifest = read_manifest(store)
    open_hour = T0 + HOUR_MS
    parts = part_rollups(store)
    assert all(open_hour <= lo <= hi < open_hour + HOUR_MS for lo, hi, _ in parts)
    bound = counter_rates.rolled_bounds(manifest, "gpu")
    assert bound["1h"] == open_hour
    # Never a minute that is not wholly sealed: rows for it could still be on their way.
    assert bound["1m"] <= (manifest.sealed_through_ms + 1) // MINUTE_MS * MINUTE_MS
    assert bound["1m"] >= open_hour + 25 * MINUTE_MS  # the merges kept up with the seals
    with StoreReader(store) as reader:
        rolled = reader.rows(
            f"SELECT gpu, epoch_ms(ts), util_gpu_pct_mean, energy_mj_inc, samples FROM gpu_1m "
            f"WHERE epoch_ms(ts) >= {open_hour} ORDER BY gpu, ts"
        )
    keys = [(r[0], r[1]) for r in rolled]
    assert len(keys) == len(set(keys))  # no minute rolled twice across parts
    want = raw_minutes(store, open_hour, bound["1m"] - 1)
    assert set(keys) == set(want)  # every sealed minute, none past the bound
    for gpu, minute, mean, inc, samples in rolled:
        w_mean, w_inc = want[(gpu, minute)]
        assert samples == MINUTE_MS // TICK_MS
        assert math.isclose(mean, w_mean, rel_tol=1e-12)
        assert (inc is None and w_inc is None) or math.isclose(inc, w_inc, rel_tol=1e-12)


def test_a_window_in_the_open_hour_reads_its_rolled_minutes_and_agrees_with_raw(store: Path) -> None:
    manifest = read_manifest(store)
    bound = counter_rates.rolled_bounds(manifest, "gpu")
    since, until = T0 + HOUR_MS - 90_500, manifest.sealed_through_ms
    kinds = [s.kind for s in counter_rates.merged(counter_rates.plan(since, until, None, bound))]
    assert kinds == ["raw", "1m", "raw"]  # the raw tail is only what no merge has rolled yet
    spans = counter_rates.merged(counter_rates.plan(since, until, None, bound))
    assert spans[-1].lo == bound["1m"] and spans[-1].hi - spans[-1].lo < 10 * MINUTE_MS
    assert_rate_is_raw_sum(store, since, until)


def assert_rate_is_raw_sum(store: Path, since: int, until: int) -> None:
    """StoreReader.rate per GPU equals the sum over consecutive valued raw samples (a drop restarts)."""
    with StoreReader(store) as reader:
        got = {r["gpu"]: r["increase"] for r in reader.rate("gpu", "energy_mj", since, until).to_pylist()}
        rows = reader.rows(
            f"SELECT gpu, energy_mj FROM gpu WHERE energy_mj IS NOT NULL "
            f"AND epoch_ms(ts) BETWEEN {since} AND {until} ORDER BY gpu, ts"
        )
    want: dict[int, float] = {}
    for prev, cur in itertools.pairwise(rows):
        if prev[0] == cur[0]:
            want[cur[0]] = want.get(cur[0], 0.0) + (cur[1] - prev[1] if cur[1] >= prev[1] else cur[1])
    assert got.keys() == want.keys()
    for gpu, inc in want.items():
        assert math.isclose(got[gpu], inc, rel_tol=1e-12)


def test_reader_rollup_counts_each_open_minute_once(store: Path) -> None:
    """StoreReader.rollup rolls from raw rows only past the rolled minutes (the history charts use it)."""
    manifest = read_manifest(store)
    since, until = T0 + HOUR_MS - 5 * MINUTE_MS, manifest.sealed_through_ms
    with StoreReader(store) as reader:
        rel, raw_from = reader.rollup("gpu", "1m", since, until)
        rows = reader.rows(f"SELECT gpu, epoch_ms(ts), util_gpu_pct_mean FROM {rel} ORDER BY gpu, ts")
        # The same buckets as Arrow, the files' from the reader's cache: asked again, nothing is decoded.
        table, arrow_from = reader.rollup_table("gpu", "1m", since, until, ["util_gpu_pct_mean"])
        decoded = reader.rollup_files.reads
        again, _ = reader.rollup_table("gpu", "1m", since, until, ["util_gpu_pct_mean"])
        assert reader.rollup_files.reads == decoded > 0 and again.equals(table)
    assert raw_from == arrow_from == counter_rates.rolled_bounds(manifest, "gpu")["1m"]
    want = raw_minutes(store, since, until)
    arrow_rows = list(
        zip(*(table.column(c).to_pylist() for c in ("gpu", "t", "util_gpu_pct_mean")), strict=True)
    )
    for got in (rows, arrow_rows):
        assert [(g, m) for g, m, _ in got] == sorted(want)
        for gpu, minute, mean in got:
            assert math.isclose(mean, want[(gpu, minute)][0], rel_tol=1e-12)


def test_closing_the_hour_replaces_its_rollup_parts(tmp_path: Path) -> None:
    root = tmp_path / "store"
    write_store(root, ticks=(2 * HOUR_MS + 6 * MINUTE_MS) // TICK_MS)  # the second hour closes
    manifest = read_manifest(root)
    second = T0 + HOUR_MS
    assert not [p for p in part_rollups(root) if p[0] < second + HOUR_MS]
    hour_files = [f for f in manifest.of("gpu_1m") if f.level == "hour" and f.min_ts >= second]
    assert len(hour_files) == 1
    since, until = T0 + 30_000, second + HOUR_MS + 5 * MINUTE_MS
    with StoreReader(root) as reader:
        counted = reader.rows(
            f"SELECT gpu, epoch_ms(ts), count(*) FROM gpu_1m WHERE epoch_ms(ts) < {second + HOUR_MS} "
            f"GROUP BY ALL HAVING count(*) > 1"
        )
    assert counted == []
    # The closed hour's buckets (its parts' minutes kept, the rest rolled at the close) are its raw rows'.
    want = raw_minutes(root, second, second + HOUR_MS - 1)
    with StoreReader(root) as reader:
        rolled = reader.rows(
            f"SELECT gpu, epoch_ms(ts), util_gpu_pct_mean, energy_mj_inc FROM gpu_1m "
            f"WHERE epoch_ms(ts) BETWEEN {second} AND {second + HOUR_MS - 1}"
        )
    assert {(g, m) for g, m, _, _ in rolled} == set(want) and len(want) == 60 * GPUS
    for gpu, minute, mean, inc in rolled:
        w_mean, w_inc = want[(gpu, minute)]
        assert math.isclose(mean, w_mean, rel_tol=1e-12)
        assert (inc is None and w_inc is None) or math.isclose(inc, w_inc, rel_tol=1e-12)
    assert_rate_is_raw_sum(root, since, until)
