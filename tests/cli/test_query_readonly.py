"""`monitor query` can only read the store: every way out seen in issue 12, as a real subprocess.

Each refused statement must exit 1 with one `monitor: ` line, print nothing of what it tried to read,
and leave every byte and mode of the store, the working directory and its neighbours as they were.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.writer import StoreWriter
from tests.fs_checks import fingerprint
from tests.storage.synth import frame

MONITOR = "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()"
SECRET = "rack-monitor-test-secret-7f3a"
"""Written into files outside the store; it must never appear in any output."""


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding `store/`, a working directory `work/`, and files outside the store."""
    top = tmp_path_factory.mktemp("query")
    with StoreWriter(top / "store", flush_interval_s=5, compaction="off") as writer:
        for tick in range(12):
            writer.append(frame(tick, gpus=4))
    (top / "work").mkdir()
    (top / "secret.txt").write_text(SECRET + "\n")
    pq.write_table(pa.table({"secret": [SECRET]}), top / "outside.parquet")
    return top


def run_query(top: Path, sql: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`monitor query` from `top/work`, so a relative path it wrote would land there."""
    return subprocess.run(
        [sys.executable, "-c", MONITOR, "query", "--store", str(top / "store"), sql, *extra],
        cwd=top / "work",
        env={**os.environ, "MONITOR_STORE": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def unchanged(place: Path) -> Iterator[Path]:
    """The place, checked byte for byte (and the DuckDB home) after the test."""
    before = fingerprint(place)
    extensions = Path.home() / ".duckdb" / "extensions"
    had_extensions = fingerprint(extensions) if extensions.is_dir() else None
    yield place
    assert fingerprint(place) == before, "a refused query changed files"
    assert (fingerprint(extensions) if extensions.is_dir() else None) == had_extensions


REFUSED = [
    ("COPY (SELECT 1) TO 'x.csv'", "COPY refused"),
    ("COPY gpu TO '{top}/work/gpu.parquet' (FORMAT parquet)", "COPY refused"),
    ("COPY (SELECT 'x') TO '{top}/store/MANIFEST.json'", "COPY refused"),
    ("COPY gpu FROM '{top}/outside.parquet'", "COPY refused"),
    ("SELECT * FROM read_text('/etc/shadow')", "Permission Error"),
    ("SELECT * FROM read_text('{top}/secret.txt')", "Permission Error"),
    ("SELECT * FROM read_csv('{top}/secret.txt')", "Permission Error"),
    ("SELECT * FROM glob('{top}/*')", "Permission Error"),
    ("SELECT * FROM read_parquet('{top}/outside.parquet')", "Permission Error"),
    ("SELECT * FROM read_parquet('{top}/store/../outside.parquet')", "Permission Error"),
    ("SELECT * FROM read_text('{top}/store/gpu/../../secret.txt')", "Permission Error"),
    ("SELECT * FROM read_text('../secret.txt')", "Permission Error"),
    ("SELECT * FROM read_parquet('https://example.invalid/x.parquet')", "Permission Error"),
    ("ATTACH '{top}/work/x.duckdb' AS x", "ATTACH refused"),
    ("INSTALL httpfs", "LOAD refused"),
    ("LOAD httpfs", "LOAD refused"),
    ("UPDATE EXTENSIONS", "monitor query is read-only"),
    ("SELECT 1; DROP VIEW gpu", "exactly one statement; this holds 2 statements"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("", "exactly one statement; this holds no statement"),
    ("SET enable_external_access = true", "SET refused"),
    ("RESET lock_configuration", "SET refused"),
    ("SET allowed_directories = ['/']", "SET refused"),
    ("PRAGMA enable_profiling", "PRAGMA refused"),
    ("PRAGMA version", "PRAGMA refused"),
    ("CREATE TABLE t AS SELECT 1", "CREATE refused"),
    ("CREATE OR REPLACE VIEW gpu AS SELECT 1", "CREATE refused"),
    ("DROP VIEW gpu", "DROP refused"),
    ("EXPORT DATABASE '{top}/work/db'", "EXPORT refused"),
    ("IMPORT DATABASE '{top}/work/db'", "PRAGMA refused"),
    ("CALL enable_logging(storage = 'file', storage_path = '{top}/work/log')", "CALL refused"),
    ("CHECKPOINT", "CALL refused"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'", "explains only a read-only query"),
    ("EXPLAIN ANALYZE (FORMAT json) COPY gpu TO 'y.csv'", "explains only a read-only query"),
    # A SELECT that reaches for a setting: the configuration is locked before the user's SQL runs.
    ("SELECT * FROM enable_logging(storage = 'file', storage_path = '{top}/work/log')", "locked"),
    ("SELECT * FROM query('COPY (SELECT 1) TO ''x.csv''')", "query failed"),
]


@pytest.mark.parametrize(("sql", "says"), REFUSED, ids=[s for s, _ in REFUSED])
def test_a_statement_that_is_not_a_read_of_the_store_is_refused_and_writes_nothing(
    unchanged: Path, sql: str, says: str
) -> None:
    done = run_query(unchanged, sql.format(top=unchanged))
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("monitor: ") and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert done.stdout == ""


ALLOWED = [
    ("SELECT count(*) AS n FROM gpu", [{"n": 48}]),
    ("SELECT count(*) AS n FROM gpu;", [{"n": 48}]),
    ("WITH g AS (SELECT DISTINCT gpu FROM gpu) SELECT count(*) AS n FROM g", [{"n": 4}]),
    ("FROM gpu SELECT max(gpu) AS top", [{"top": 3}]),
    ("VALUES (1, 'a')", [{"col0": 1, "col1": "a"}]),
    ("SELECT count(*) AS n FROM read_parquet('{top}/store/gpu/*/*.parquet')", [{"n": 48}]),
    ("SELECT count(*) AS n FROM read_text('{top}/store/MANIFEST.json')", [{"n": 1}]),
    ("SELECT count(*) AS n FROM (DESCRIBE gpu) WHERE column_name = 'energy_mj'", [{"n": 1}]),
]


@pytest.mark.parametrize(("sql", "rows"), ALLOWED, ids=[s for s, _ in ALLOWED])
def test_reads_of_the_store_run(unchanged: Path, sql: str, rows: list[dict[str, object]]) -> None:
    done = run_query(unchanged, sql.format(top=unchanged), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == rows


@pytest.mark.parametrize("sql", ["DESCRIBE gpu", "SUMMARIZE gpu", "SHOW TABLES", "EXPLAIN SELECT * FROM gpu"])
def test_describe_summarize_show_and_explain_run(unchanged: Path, sql: str) -> None:
    done = run_query(unchanged, sql)
    assert done.returncode == 0, done.stderr
    shown = re.fullmatch(r"\((\d+) rows?\)", done.stdout.splitlines()[-1])
    assert shown and int(shown.group(1)) > 0, done.stdout
