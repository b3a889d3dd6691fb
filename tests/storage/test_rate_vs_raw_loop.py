"""StoreReader.rate: a counter's increase over any window (raw edges, 1 min and 1 h buckets, segments,
files out of order, rows stored twice) equals the sum over consecutive raw samples.

Expected values come from a per-series loop written here over the raw rows (read with plain SQL),
not from storage/increase.py or counter_rates.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import counter_rates
from storage.frame import Frame, batch_from_columns
from storage.layout import HOUR_MS, read_manifest, write_manifest
from storage.reader import StoreReader
from storage.writer import StoreWriter
from tests.storage.synth import T0

TICK_MS = 10_000
TICKS = 2 * 360 + 250  # two compacted hours (with rollups), the open third hour in segments
GPUS = 3


def write_store(root: Path, nulls: bool, parts: bool = False) -> None:
    """Energy counters rising with resets (to a small value); with nulls, GPU 2 misses readings; with
    parts, segments sealed mid-minute and merged into parts often, with the open hour's 1 min rollups."""
    rng = random.Random(11)
    current = [rng.randint(0, 10_000) for _ in range(GPUS)]
    flush, merge = (70, 3) if parts else (600, 30)
    with StoreWriter(
        root, flush_interval_s=flush, compaction="inline", grace_s=0, merge_segments=merge
    ) as writer:
        for tick in range(TICKS):
            energy: list[int | None] = []
            for g in range(GPUS):
                current[g] = rng.randint(0, 300) if rng.random() < 0.02 else current[g] + rng.randint(0, 5000)
                missing = nulls and g == 2 and (tick % 97 == 6 or tick == 360)  # at bucket edges too
                energy.append(None if missing else current[g])
            ts = T0 + tick * TICK_MS
            columns = {"ts": [ts] * GPUS, "gpu": list(range(GPUS)), "uuid": [f"G{g}" for g in range(GPUS)]}
            columns |= {"tray": [1] * GPUS, "state": [0] * GPUS, "energy_mj": energy}
            writer.append(Frame(ts, {"gpu": batch_from_columns("gpu", columns)}))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, nulls, parts in (("clean", False, False), ("nulls", True, False), ("parts", True, True)):
        out[name] = tmp_path_factory.mktemp("wr") / name
        write_store(out[name], nulls, parts)
    return out


def expected(
    store: Path, since: int, until: int, step: int | None, series: str | None = None
) -> dict[tuple[int, int], tuple[float, float]]:
    """(gpu, step start or 0) -> (increase, seconds), by a loop over each series' valued samples."""
    with StoreReader(store) as reader:
        rows = reader.rows(
            f"SELECT gpu, epoch_ms(ts), energy_mj FROM gpu WHERE energy_mj IS NOT NULL "
            f"AND epoch_ms(ts) BETWEEN {since} AND {until} AND {series or 'true'} ORDER BY gpu, ts"
        )
    out: dict[tuple[int, int], tuple[float, float]] = {}
    for prev, cur in itertools.pairwise(rows):
        if prev[0] != cur[0]:
            continue
        gain = cur[2] - prev[2] if cur[2] >= prev[2] else cur[2]  # a drop is a restart from 0
        key = (cur[0], cur[1] // step * step if step else 0)
        inc, sec = out.get(key, (0.0, 0.0))
        out[key] = (inc + gain, sec + (cur[1] - prev[1]) / 1000)
    return out


def as_dict(rows: list[dict], step: int | None) -> dict[tuple[int, int], tuple[float, float]]:
    return {
        (r["gpu"], int(r["ts"].timestamp() * 1000) if step else 0): (r["increase"], r["seconds"])
        for r in rows
    }


def check(
    store: Path, since: int, until: int, step: int | None, rollups: bool, series: str | None = None
) -> None:
    """The reader's rate (over the rows of `series`, a SQL condition, when given) equals the loop's."""
    with StoreReader(store) as reader:
        got = reader.rate("gpu", "energy_mj", since, until, step_ms=step, rollups=rollups, series=series)
    want = expected(store, since, until, step, series)
    have = as_dict(got.to_pylist(), step)
    assert have.keys() == want.keys()
    for key, (inc, sec) in want.items():
        assert math.isclose(have[key][0], inc, rel_tol=1e-12) and have[key][1] == pytest.approx(sec)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["clean", "nulls", "parts"]),
    since_tick=st.integers(0, TICKS - 2),
    length_ms=st.integers(1, TICKS * TICK_MS),
    jitter=st.integers(-TICK_MS + 1, TICK_MS - 1),
    step=st.sampled_from([None, 60_000, 300_000, HOUR_MS]),
    rollups=st.booleans(),
    series=st.sampled_from([None, "gpu <> 1"]),
)
def test_rate_equals_the_sum_over_raw_samples(
    stores: dict[str, Path],
    name: str,
    since_tick: int,
    length_ms: int,
    jitter: int,
    step: int | None,
    rollups: bool,
    series: str | None,
) -> None:
    since = T0 + since_tick * TICK_MS + jitter
    check(stores[name], since, since + length_ms, step, rollups, series)


def test_a_window_over_raw_edges_buckets_and_segments(stores: dict[str, Path]) -> None:
    since, until = T0 + 30_000, T0 + 2 * HOUR_MS + 600_000  # raw head, buckets, raw tail in segments
    rolled = counter_rates.rolled_until(read_manifest(stores["clean"]), "gpu")
    assert {s.kind for s in counter_rates.plan(since, until, None, rolled)} == {"raw", "1m", "1h"}
    for name in ("clean", "nulls", "parts"):
        for rollups in (True, False):
            check(stores[name], since, until, None, rollups)
            check(stores[name], since, until, None, rollups, series="gpu <> 1")  # through SQL
    bounds = counter_rates.rolled_bounds(read_manifest(stores["parts"]), "gpu")
    assert bounds["1m"] > bounds["1h"] == T0 + 2 * HOUR_MS  # the open hour's minutes are rolled
    second_hour = (T0 + HOUR_MS, T0 + 2 * HOUR_MS - 1)  # GPU 2 has no reading at its first tick
    check(stores["nulls"], *second_hour, None, True)
    check(stores["nulls"], *second_hour, None, True, series="gpu <> 1")


def test_a_file_out_of_order_is_answered_right(stores: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "shuffled"
    write_store(root, nulls=False)
    hour = next(f for f in read_manifest(root).of("gpu") if f.level == "hour")
    table = pq.read_table(root / hour.path)
    order = list(range(table.num_rows))
    random.Random(3).shuffle(order)
    pq.write_table(table.take(order), root / hour.path)
    since, until = hour.min_ts, hour.max_ts
    check(root, since, until, None, False)


def test_rows_stored_twice_are_answered_right(tmp_path: Path) -> None:
    root = tmp_path / "twice"
    write_store(root, nulls=False)
    manifest = read_manifest(root)
    hour = next(f for f in manifest.of("gpu") if f.level == "hour")
    copy = hour.path.replace(".parquet", "-copy.parquet")
    shutil.copyfile(root / hour.path, root / copy)
    manifest.files.append(dataclasses.replace(hour, path=copy))
    write_manifest(root, manifest)
    check(root, hour.min_ts, hour.max_ts, None, False)
