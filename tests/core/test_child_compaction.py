"""Compaction in a child process (issue 18): the files in-process compaction makes; a writer that stays light.

The recorder and the live client compact through storage.compaction_process, so DuckDB, pyarrow.dataset and
a merge's peak never enter their own memory. Expected rows come from the synthetic frames written (the
rack's shape: ticks x GPUs), not from the compactor.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq

from storage.compaction_process import ChildCompaction
from storage.compactor import Compactor
from storage.layout import read_manifest
from storage.writer import StoreWriter
from tests.storage.synth import GPUS, T0, frame

MINUTE_MS = 60_000
ROOT = Path(__file__).resolve().parents[2]


def write_minutes(writer: StoreWriter, first: int, last: int) -> None:
    """One tick a minute, ticks first..last-1, with one endpoint's latency histogram."""
    for tick in range(first, last):
        writer.append(frame(tick, MINUTE_MS, hist=True))


def test_a_child_compacts_as_the_writer_would_and_the_writer_publishes_it(tmp_path: Path) -> None:
    store = tmp_path / "s"
    ticks = 26 * 60  # 26 hours a minute apart: a complete day, hours after it, and an open hour
    with StoreWriter(store, flush_interval_s=600, compaction="off", grace_s=0) as writer:
        write_minutes(writer, 0, ticks)
        writer.flush()
        child = ChildCompaction(writer.live, grace_s=0, retention_ms=None, merge_segments=30)
        assert child.planner.due()
        assert child.run_once() > 0
        assert not child.planner.due(), "everything due was done in one child run"
        published = writer.live.current
    manifest = read_manifest(store)
    assert manifest.files == published.files, "the writer published the child's journal"
    levels = {(f.table, f.level) for f in manifest.files}
    assert {("gpu", "day"), ("gpu", "hour"), ("gpu_1m", "day"), ("gpu_1h", "day")} <= levels
    assert ("serving_hist", "day") in levels and ("serving_hist_1m", "hour") in levels
    on_disk = {p.relative_to(store).as_posix() for p in store.rglob("*.parquet")}
    assert on_disk == {f.path for f in manifest.files}, "grace 0: the inputs are gone, nothing unlisted"
    gpu = pq.read_table([store / f.path for f in manifest.of("gpu")], columns=["ts", "gpu", "energy_mj"])
    assert gpu.num_rows == ticks * GPUS
    rows = sorted(zip(*(gpu.column(c).to_pylist() for c in ("ts", "gpu", "energy_mj")), strict=True))
    assert rows[-1][1:] == (GPUS - 1, (ticks - 1) * 600_000 + GPUS - 1)
    assert len({(r[0], r[1]) for r in rows}) == ticks * GPUS, "no row twice, none lost"
    day = [f for f in manifest.of("gpu") if f.level == "day"]
    assert len(day) == 1 and day[0].rows == 24 * 60 * GPUS and day[0].min_ts == T0


def test_due_says_yes_exactly_when_run_once_has_work(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with StoreWriter(store, flush_interval_s=600, compaction="off", grace_s=3600) as writer:
        compactor = Compactor(
            writer.live, grace_s=3600, merge_segments=3, retention_ms={"gpu": 3 * 3_600_000}
        )
        answers = []
        for hour in range(5):
            for tenth in range(6):
                first = hour * 60 + tenth * 10
                write_minutes(writer, first, first + 10)
                due = compactor.due()
                answers.append(due)
                assert due == (compactor.run_once() > 0), f"hour {hour}, tenth {tenth}"
                assert not compactor.due()
    assert True in answers and False in answers


def test_the_writer_process_never_loads_duckdb_or_pyarrow_dataset(tmp_path: Path) -> None:
    """A writer compacting in children: hours get sealed and rolled up, and none of it in its process."""
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from storage.layout import read_manifest
        from storage.writer import StoreWriter
        from tests.storage.synth import frame
        store = Path({str(tmp_path / "s")!r})
        with StoreWriter(store, flush_interval_s=600, compaction="child", grace_s=0) as writer:
            for tick in range(3 * 60 + 10):
                writer.append(frame(tick, {MINUTE_MS}, hist=True))
            writer.flush()
            for _ in range(1200):  # the compaction thread runs the child after the last seal
                if {{"gpu_1h", "serving_hist_1m"}} <= {{f.table for f in read_manifest(store).files}}:
                    break
                time.sleep(0.25)
        levels = sorted({{f"{{f.table}}/{{f.level}}" for f in read_manifest(store).files}})
        loaded = sorted(m for m in ("duckdb", "pyarrow.dataset", "pyarrow.acero") if m in sys.modules)
        print(json.dumps({{"levels": levels, "loaded": loaded}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert {"gpu/hour", "gpu_1h/hour", "serving_hist_1m/hour"} <= set(result["levels"]), result
    assert result["loaded"] == [], "DuckDB and pyarrow.dataset stay in the compaction child"


def test_a_child_rolls_the_open_hours_sealed_minutes_with_its_part(tmp_path: Path) -> None:
    """The recorder's cadence (10 s segments, a part per 30): the part and the 1 min buckets of the
    minutes sealed so far come back in one published step; no bucket of a minute still being sealed."""
    store = tmp_path / "s"
    ticks = 5 * 60 + 35  # 5 min 35 s a second apart: 33 segments, the sixth minute not whole
    with StoreWriter(store, flush_interval_s=10, compaction="off", grace_s=0) as writer:
        for tick in range(ticks):
            writer.append(frame(tick, 1000, hist=True))
        writer.flush()
        child = ChildCompaction(writer.live, grace_s=0, retention_ms=None, merge_segments=30)
        assert child.run_once() > 0
    manifest = read_manifest(store)
    assert [f.level for f in manifest.of("gpu") if f.level == "part"] == ["part"]
    for table, per_minute in (("gpu_1m", GPUS), ("serving_hist_1m", 3)):
        parts = [f for f in manifest.of(table) if f.level == "part"]
        assert len(parts) == 1, table
        rows = pq.read_table(store / parts[0].path, columns=["ts", "samples"])
        starts = sorted({int(t.timestamp() * 1000) for t in rows.column("ts").to_pylist()})
        assert starts == [T0 + m * MINUTE_MS for m in range(5)], table  # minutes 0-4; 5 is not sealed whole
        assert rows.num_rows == 5 * per_minute and set(rows.column("samples").to_pylist()) == {60}
