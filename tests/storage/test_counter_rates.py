"""Counter rates from rollup buckets plus raw edges equal the rates over every raw row, resets included."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import counter_rates
from storage.frame import Frame, batch_from_columns
from storage.layout import HOUR_MS, read_manifest
from storage.reader import StoreReader
from storage.rollups import compute_rollup
from storage.writer import StoreWriter
from tests.storage.synth import T0

TICK_MS = 10_000
TICKS = 2 * 360 + 250  # 2 h 41 min: two compacted hours, the open third hour in segments
GPUS = 3


def energy_values(seed: int = 7) -> list[list[int | None]]:
    """Per tick, per GPU: a counter rising by 0..5000 with resets (to a small value) and a few NULLs."""
    rng = random.Random(seed)
    values: list[list[int | None]] = []
    current = [rng.randint(0, 10_000) for _ in range(GPUS)]
    for tick in range(TICKS):
        row: list[int | None] = []
        for g in range(GPUS):
            if rng.random() < 0.02:
                current[g] = rng.randint(0, 300)  # restarted: below the previous value
            else:
                current[g] += rng.randint(0, 5000)
            # GPU 2 misses a reading now and then, at bucket edges too (tick 6 is 1 min, 360 is 1 h).
            row.append(None if g == 2 and (tick % 97 == 6 or tick == 360) else current[g])
        values.append(row)
    return values


def write_store(root: Path) -> None:
    """Write the ticks with inline compaction, as a live collector would."""
    with StoreWriter(root, flush_interval_s=600, compaction="inline", grace_s=0) as writer:
        for tick, energy in enumerate(energy_values()):
            ts = T0 + tick * TICK_MS
            batch = batch_from_columns(
                "gpu",
                {
                    "ts": [ts] * GPUS,
                    "gpu": list(range(GPUS)),
                    "uuid": [f"G{g}" for g in range(GPUS)],
                    "tray": [1] * GPUS,
                    "state": [0] * GPUS,
                    "energy_mj": energy,
                },
            )
            writer.append(Frame(ts, {"gpu": batch}))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rates") / "s"
    write_store(root)
    return root


def answer(reader: StoreReader, since: int, until: int, step: int | None, rollups: bool) -> list[dict]:
    return reader.rate("gpu", "energy_mj", since, until, step_ms=step, rollups=rollups).to_pylist()


def test_store_has_compacted_hours_with_rollups_and_an_open_hour(store: Path) -> None:
    manifest = read_manifest(store)
    assert counter_rates.rolled_until(manifest, "gpu") == T0 + 2 * HOUR_MS
    assert {f.level for f in manifest.of("gpu") if f.min_ts >= T0 + 2 * HOUR_MS} <= {"seg", "part"}
    assert manifest.of("gpu_1h") and manifest.of("gpu_1m")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    since_tick=st.integers(0, TICKS - 2),
    length_ms=st.integers(1, TICKS * TICK_MS),
    jitter=st.integers(-TICK_MS + 1, TICK_MS - 1),
    step=st.sampled_from([None, 45_000, 60_000, 300_000, 1_800_000, HOUR_MS]),
)
def test_rollup_assisted_rate_equals_raw_rate(
    store: Path, since_tick: int, length_ms: int, jitter: int, step: int | None
) -> None:
    since = T0 + since_tick * TICK_MS + jitter
    until = since + length_ms
    with StoreReader(store) as reader:
        assert answer(reader, since, until, step, True) == answer(reader, since, until, step, False)


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (T0, T0 + 3 * HOUR_MS - 1),  # aligned, running into the open hour
        (T0 + 59_000, T0 + 2 * HOUR_MS - 1),  # minute edges, whole second hour
        (T0 + 7_777, T0 + 2 * HOUR_MS + 5 * 60_000 + 3),  # no edge aligned
        (T0 + HOUR_MS, T0 + 2 * HOUR_MS - 1),  # exactly one 1 h bucket (a NULL at its first sample)
    ],
)
def test_windows_aligned_and_not_are_exact_and_read_buckets(store: Path, since: int, until: int) -> None:
    with StoreReader(store) as reader:
        assisted = answer(reader, since, until, None, True)
        assert assisted == answer(reader, since, until, None, False)
        assert len(assisted) == GPUS and all(r["increase"] > 0 for r in assisted)
    spans = counter_rates.plan(since, until, None, counter_rates.rolled_until(read_manifest(store), "gpu"))
    assert any(s.kind != "raw" for s in spans)
    assert sum(s.hi - s.lo + 1 for s in spans if s.kind == "raw") < 2 * HOUR_MS


def test_plan_takes_coarsest_buckets_and_respects_steps_and_the_open_hour() -> None:
    rolled = T0 + 3 * HOUR_MS
    spans = counter_rates.merged(counter_rates.plan(T0 + 90_500, T0 + 4 * HOUR_MS, None, rolled))
    assert spans == [
        counter_rates.Span("raw", T0 + 90_500, T0 + 119_999),
        counter_rates.Span("1m", T0 + 120_000, T0 + HOUR_MS - 1),
        counter_rates.Span("1h", T0 + HOUR_MS, T0 + 3 * HOUR_MS - 1),
        counter_rates.Span("raw", T0 + 3 * HOUR_MS, T0 + 4 * HOUR_MS),
    ]
    stepped = counter_rates.plan(T0, T0 + 2 * HOUR_MS - 1, 1_800_000, rolled)
    assert {s.kind for s in stepped} == {"1m"}, "a 1 h bucket would straddle 30-minute steps"
    banned = counter_rates.plan(T0, T0 + HOUR_MS - 1, None, rolled, {"1h": {T0}, "1m": {T0 + 60_000}})
    assert counter_rates.merged(banned)[:3] == [
        counter_rates.Span("1m", T0, T0 + 59_999),
        counter_rates.Span("raw", T0 + 60_000, T0 + 119_999),
        counter_rates.Span("1m", T0 + 120_000, T0 + HOUR_MS - 1),
    ]


def test_rollup_increase_counts_a_reset_inside_a_bucket() -> None:
    rows = pa.table(
        {
            "ts": pa.array([T0 + i * 1000 for i in range(6)], pa.timestamp("ms", tz="UTC")),
            "gpu": pa.array([0] * 6, pa.int16()),
            "energy_mj": pa.array([100, 150, None, 20, 70, 80], pa.int64()),
        }
    )
    full = batch_from_columns("gpu", {c: rows.column(c).to_pylist() for c in rows.column_names})
    bucket = compute_rollup("gpu", 60_000, pa.Table.from_batches([full])).to_pylist()[0]
    # 100 -> 150 (+50), NULL skipped, 150 -> 20 restarted (+20), +50, +10; last - first would say -20.
    assert (bucket["energy_mj_first"], bucket["energy_mj_last"], bucket["energy_mj_inc"]) == (100, 80, 130)
    assert (bucket["first_ms"], bucket["last_ms"], bucket["samples"]) == (0, 5000, 6)
    edge = batch_from_columns("gpu", {**{c: rows.column(c).to_pylist() for c in rows.column_names}})
    edge = edge.set_column(
        edge.schema.get_field_index("energy_mj"), "energy_mj", pa.array([None, 1, 2, 3, 4, 5])
    )
    late = compute_rollup("gpu", 60_000, pa.Table.from_batches([edge])).to_pylist()[0]
    assert late["energy_mj_inc"] is None, "first_ms is not the counter's first sample: readers go raw"


def test_store_written_before_inc_existed_still_answers(tmp_path: Path) -> None:
    root = tmp_path / "old"
    write_store(root)
    # Strip what this change added from every rollup file, as a store written before it has them.
    for f in read_manifest(root).files:
        if f.table.startswith("gpu_1"):
            path = root / f.path
            table = pq.read_table(path)
            keep = [n for n in table.column_names if not n.endswith("_inc") and not n.endswith("_ms")]
            pq.write_table(table.select(keep), path)
    since, until = T0 + 30_000, T0 + 2 * HOUR_MS + 600_000
    with StoreReader(root) as reader:
        assert answer(reader, since, until, None, True) == answer(reader, since, until, None, False)
        old = reader.rate("gpu", "energy_mj", T0, T0 + 2 * HOUR_MS - 1, resolution="1h").to_pylist()
        assert [r["gpu"] for r in old] == list(range(GPUS))
        assert all(r["seconds"] == (2 * HOUR_MS - 1) / 1000 for r in old), "buckets span start to end"


def test_explicit_resolution_uses_inc_and_matches_raw_on_whole_hours(store: Path) -> None:
    with StoreReader(store) as reader:
        hourly = reader.rate("gpu", "energy_mj", T0, T0 + 2 * HOUR_MS - 1, resolution="1h").to_pylist()
        raw = answer(reader, T0, T0 + 2 * HOUR_MS - 1, None, False)
    # GPUs 0 and 1 have no NULLs, so every bucket has its increase and sample times: exact.
    assert hourly[:2] == raw[:2]
