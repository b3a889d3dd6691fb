"""The reader: views over manifest + head, windows, rates with resets, PromQL histogram quantiles."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from storage.frame import Frame, batch_from_columns
from storage.layout import NotAStoreError
from storage.quantile import bucket_quantile
from storage.reader import VIEWS, StoreReader
from storage.writer import StoreWriter
from tests.storage.synth import GPUS, T0, frame


def test_views_union_sealed_files_and_the_head_without_duplicates(tmp_path: Path) -> None:
    store = tmp_path / "s"
    writer = StoreWriter(store, flush_interval_s=10, compaction="off")
    for tick in range(25):
        writer.append(frame(tick))
    assert writer.status.pending_rows == 5 * GPUS
    with StoreReader(store, head=writer.head) as live, StoreReader(store) as sealed:
        assert live.sql("SELECT count(*) AS n FROM gpu").to_pylist() == [{"n": 25 * GPUS}]
        assert sealed.sql("SELECT count(*) AS n FROM gpu").to_pylist() == [{"n": 20 * GPUS}]
        writer.append(frame(25))  # the live reader picks up the new head version by itself
        assert live.sql("SELECT count(DISTINCT ts) AS d FROM gpu").to_pylist() == [{"d": 26}]
        writer.flush()  # sealed now: the head part shrinks, nothing doubles
        assert live.sql("SELECT count(*) AS n FROM gpu").to_pylist() == [{"n": 26 * GPUS}]
        assert sealed.sql("SELECT count(*) AS n FROM gpu").to_pylist() == [{"n": 26 * GPUS}]
        for view in VIEWS:
            live.sql(f"SELECT * FROM {view} LIMIT 1")
        window = live.relation("gpu", T0 + 3000, T0 + 7000)
        assert live.sql(f"SELECT count(*) AS n FROM {window}").to_pylist() == [{"n": 5 * GPUS}]
    writer.close()


def test_reading_a_missing_directory_or_plain_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotAStoreError, match="no such directory"):
        StoreReader(tmp_path / "absent")
    with pytest.raises(NotAStoreError, match="not a rack-monitor store"):
        StoreReader(tmp_path)


def energy_frame(ts: int, energy: list[int]) -> Frame:
    n = len(energy)
    gpu = batch_from_columns(
        "gpu",
        {
            "ts": [ts] * n,
            "gpu": list(range(n)),
            "uuid": [f"G{g}" for g in range(n)],
            "tray": [1] * n,
            "state": [0] * n,
            "energy_mj": energy,
        },
    )
    return Frame(ts, {"gpu": gpu})


def test_rate_detects_counter_resets_like_prometheus(tmp_path: Path) -> None:
    store = tmp_path / "s"
    # GPU 0: +1000 mJ/s with a driver reload (reset to 500) at t=4; GPU 1: steady +2000 mJ/s.
    series0 = [0, 1000, 2000, 3000, 500, 1500, 2500]
    with StoreWriter(store, flush_interval_s=3, compaction="off") as writer:
        for i, e0 in enumerate(series0):
            writer.append(energy_frame(T0 + i * 1000, [e0, 2000 * i]))
    with StoreReader(store) as reader:
        rows = reader.rate("gpu", "energy_mj", T0, T0 + 6000).to_pylist()
        assert rows[0]["gpu"] == 0
        assert rows[0]["increase"] == 3000 + 500 + 2000  # after the reset, the new value counts whole
        assert rows[0]["seconds"] == 6.0
        assert rows[1]["rate"] == 2000.0
        stepped = reader.rate("gpu", "energy_mj", T0, T0 + 6000, step_ms=3000).to_pylist()
        expected = [(0, 2000), (0, 2500), (0, 1000), (1, 4000), (1, 6000), (1, 2000)]
        assert [(r["gpu"], r["increase"]) for r in stepped] == expected


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, [(0.1, 1), (1.0, 3), (math.inf, 4)], 0.55),
        (0.25, [(0.1, 1), (1.0, 3), (math.inf, 4)], 0.1),
        (0.99, [(0.1, 1), (1.0, 3), (math.inf, 4)], 1.0),  # rank in +Inf: the highest finite bound
        (0.1, [(0.5, 10), (math.inf, 10)], 0.05),  # first bucket interpolates from 0
        (0.5, [(0.5, 0), (math.inf, 0)], math.nan),  # no observations
        (0.5, [(0.5, 3)], math.nan),  # no +Inf bucket
        (-0.1, [(0.5, 1), (math.inf, 1)], -math.inf),
        (1.5, [(0.5, 1), (math.inf, 1)], math.inf),
        (0.5, [(0.1, 4), (1.0, 3), (math.inf, 4)], 0.05),  # non-monotonic counts are evened out
    ],
)
def test_bucket_quantile_matches_promql(q: float, buckets: list[tuple[float, float]], expected: float):
    got = bucket_quantile(q, buckets)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


def test_histogram_quantile_over_a_window_uses_bucket_increases(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with StoreWriter(store, flush_interval_s=30, compaction="off") as writer:
        for tick in range(1, 61):
            writer.append(frame(tick, hist=True))

    def quantile(
        reader: StoreReader, metric: str, since: int, until: int, endpoint: str | None = None
    ) -> float:
        buckets: dict[float, float] = {}
        for r in reader.rate("serving_hist", "count", since, until).to_pylist():
            if r["metric"] == metric and endpoint in (None, r["endpoint"]):
                buckets[r["le"]] = buckets.get(r["le"], 0.0) + r["increase"]
        return bucket_quantile(0.5, sorted(buckets.items()))

    with StoreReader(store) as reader:
        # Per tick: 1 obs <= 0.1 s, 2 in (0.1, 1], 1 above 1 s.  p50 -> rank 2 of 4 -> 0.1 + 0.9 * 1/2.
        p50 = quantile(reader, "ttft", T0 + 10_000, T0 + 50_000)
        assert p50 == pytest.approx(0.55)
        assert quantile(reader, "ttft", T0 + 10_000, T0 + 50_000, endpoint="vllm-0") == p50
        assert math.isnan(quantile(reader, "itl", T0, T0 + 60_000))


def test_views_are_there_for_what_a_user_types_and_time_range_reads_no_file(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with StoreWriter(store, flush_interval_s=10, compaction="off") as writer:
        for tick in range(25):
            writer.append(frame(tick))
    with StoreReader(store) as reader:
        listed = {r["name"] for r in reader.query("SHOW TABLES").to_pylist()}
        assert set(VIEWS) <= listed
    with StoreReader(store) as reader:  # a first statement naming a view builds them
        (lo, hi), *_ = reader.rows("SELECT epoch_ms(min(ts)), epoch_ms(max(ts)) FROM gpu")
        assert reader.time_range("gpu") == (lo, hi) == (T0, T0 + 24_000)
    for f in (store / "gpu").rglob("*.parquet"):
        f.write_bytes(b"not parquet")  # the manifest's bounds are what time_range reads
    with StoreReader(store) as reader:
        assert reader.time_range("gpu") == (T0, T0 + 24_000)


def test_a_slow_query_draws_no_progress_bar_into_the_output(tmp_path: Path) -> None:
    # A loaded machine made report queries pass DuckDB's 2 s progress-bar threshold, and the bar went
    # to stdout: the first line of `monitor report` was no longer its heading.
    writer = StoreWriter(tmp_path, compaction="off")
    writer.append(frame(0))
    writer.close()
    with StoreReader(tmp_path) as reader:
        shown = reader.con.execute("SELECT current_setting('enable_progress_bar')").fetchone()
    assert shown == (False,)


def test_the_readers_connection_opens_only_the_store_and_stays_locked(tmp_path: Path) -> None:
    # report, export, replay and the TUI read through this connection: none of them can be talked
    # into opening another file, loading an extension or unlocking it.
    store = tmp_path / "store"
    with StoreWriter(store, compaction="off") as writer:
        writer.append(frame(0))
        with StoreReader(store, head=writer.head) as reader:
            (tmp_path / "outside.txt").write_text("not the store's\n")
            with pytest.raises(duckdb.PermissionException):
                reader.sql(f"SELECT * FROM read_text('{tmp_path / 'outside.txt'}')")
            for setting in ("SET enable_external_access = true", "SET autoload_known_extensions = true"):
                with pytest.raises(duckdb.InvalidInputException, match="locked"):
                    reader.con.execute(setting)
            with pytest.raises(duckdb.PermissionException):
                reader.sql("LOAD httpfs")
            writer.append(frame(1))  # the head's rows still register after the lock
            assert reader.sql("SELECT count(*) AS n FROM gpu").to_pylist() == [{"n": 2 * GPUS}]


def test_a_rollup_draws_no_progress_bar_into_the_recorders_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The compactor's rollup connection is not the reader's: on a loaded recorder an hour's rollup
    # passed DuckDB's 2 s threshold and drew its bar into `monitor collect`'s stdout (and so the journal).
    # Here every statement is "slow" (a 0 ms threshold): the bar must be off when the rollup's query runs.
    from storage.rollups import compute_rollup

    connect, seen = duckdb.connect, []

    class Slow:
        """A connection whose every statement passes the progress-bar threshold."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            self.con = connect(*args, **kwargs)  # type: ignore[arg-type]
            self.con.execute("SET progress_bar_time = 0")

        def sql(self, query: str) -> duckdb.DuckDBPyRelation:
            seen.extend(self.con.execute("SELECT current_setting('enable_progress_bar')").fetchall())
            return self.con.sql(query)

        def __getattr__(self, name: str) -> object:
            return getattr(self.con, name)

    rows = [frame(tick).table("gpu") for tick in range(90)]
    monkeypatch.setattr(duckdb, "connect", Slow)
    rolled = compute_rollup("gpu", 60_000, pa.Table.from_batches(rows))
    assert rolled.num_rows == 2 * GPUS and seen == [(False,)]
