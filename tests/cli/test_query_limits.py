"""`monitor query` is bounded: a result too long for the table is counted, not held; csv and json stream;
a runaway query stops at --timeout; DuckDB gets a --memory-limit (25 % of RAM, not its 80 %, by default).

Real subprocesses over a real store. Expected counts are by hand: 12 ticks x 4 GPUs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.writer import StoreWriter
from tests.storage.synth import frame

MONITOR = "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()"
TICKS, GPUS = 12, 4


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits") / "store"
    with StoreWriter(root, flush_interval_s=5, compaction="off") as writer:
        for tick in range(TICKS):
            writer.append(frame(tick, gpus=GPUS))
    return root


def query(store: Path, sql: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", MONITOR, "query", "--store", str(store), sql, *extra],
        env={**os.environ, "MONITOR_STORE": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_table_prints_max_rows_and_counts_the_rest(store: Path) -> None:
    done = query(store, "SELECT gpu, ts FROM gpu ORDER BY gpu, ts", "--max-rows", "10")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 + 10 + 1  # header, rule, ten rows, the count
    assert lines[-1] == f"({TICKS * GPUS} rows; the first 10 shown: --max-rows N, or --format csv)"


def test_csv_and_json_stream_every_row_whatever_max_rows(store: Path) -> None:
    as_csv = query(store, "SELECT gpu, ts FROM gpu", "--format", "csv", "--max-rows", "1")
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["gpu", "ts"] and len(rows) == 1 + TICKS * GPUS
    as_json = query(store, "SELECT gpu, ts FROM gpu", "--format", "json", "--max-rows", "1")
    objects = json.loads(as_json.stdout)
    assert len(objects) == TICKS * GPUS
    assert sorted({o["gpu"] for o in objects}) == list(range(GPUS))


def test_a_runaway_query_stops_at_its_timeout_with_one_line(store: Path) -> None:
    done = query(store, "SELECT count(*) FROM range(10000000000000)", "--timeout", "0.5")
    assert done.returncode == 1
    assert done.stderr == "monitor: query stopped after 0.5 s (--timeout)\n"
    assert done.stdout == ""


def test_duckdb_runs_under_the_memory_limit(store: Path) -> None:
    done = query(
        store, "SELECT current_setting('memory_limit') AS m", "--format", "csv", "--memory-limit", "64MB"
    )
    assert done.stdout.splitlines()[1] == "61.0 MiB"  # DuckDB's own rendering of 64 MB
    bad = query(store, "SELECT 1", "--memory-limit", "lots")
    assert bad.returncode == 1
    assert bad.stderr.startswith("monitor: --memory-limit 'lots': ") and bad.stderr.count("\n") == 1
