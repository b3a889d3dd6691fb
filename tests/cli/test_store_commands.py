"""monitor collect / query / sim --backfill, through the real CLI (subprocesses for signals)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.cli import app
from storage.layout import read_manifest
from storage.reader import StoreReader
from storage.writer import StoreWriter
from tests.storage.synth import GPUS, frame
from tests.store_checks import assert_no_duplicate_rows

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def monitor(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point (so UserError handling is the real one)."""
    code = "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()"
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, env=full_env, **kw
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    with StoreWriter(root, flush_interval_s=5, compaction="off") as writer:
        for tick in range(12):
            writer.append(frame(tick, gpus=4))
    return root


def test_query_formats(store: Path) -> None:
    sql = "SELECT gpu, count(*) AS n, max(ts) AS last FROM gpu GROUP BY gpu ORDER BY gpu"
    table = runner.invoke(app, ["query", "--store", str(store), sql])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["gpu", "n", "last"]
    assert lines[2].split() == ["0", "12", "2025-01-01T00:00:11.000Z"]
    assert lines[-1] == "(4 rows)"
    as_csv = runner.invoke(app, ["query", "--store", str(store), sql, "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [r["n"] for r in rows] == ["12"] * 4
    as_json = runner.invoke(app, ["query", "--store", str(store), sql, "--format", "json"])
    assert json.loads(as_json.output)[3] == {"gpu": 3, "n": 12, "last": "2025-01-01T00:00:11.000Z"}


def test_query_takes_the_store_from_monitor_store(store: Path) -> None:
    done = monitor(
        "query", "SELECT count(*) AS n FROM gpu", "--format", "json", env={"MONITOR_STORE": str(store)}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"n": 12 * 4}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", "SELECT 1"], "no store given: pass --store DIR or set MONITOR_STORE"),
        (["query", "--store", "{tmp}", "SELECT 1"], "is not a rack-monitor store"),
        (["query", "--store", "{store}", "SELEC nonsense"], "query failed: Parser Error"),
        (["query", "--store", "{store}", "SELECT * FROM gpu", "--format", "xml"], "unknown format 'xml'"),
        (["collect", "--store", "{store}"], "pass exactly one of --config FILE, --sim or --nvml"),
        (["collect", "--config", "{tmp}/rack.toml", "--store", "{store}"], "rack.toml: no such file"),
        (["sim", "--backfill", "forever", "--store", "{tmp}/new"], "bad --backfill duration 'forever'"),
        (
            ["sim", "--backfill", "1m", "--store", "{tmp}/new", "--scenario", "nope"],
            "unknown scenario 'nope'",
        ),
    ],
)
def test_user_errors_are_one_line(store: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [a.format(tmp=tmp_path, store=store) for a in args]
    done = monitor(*args, env={"MONITOR_STORE": ""})
    assert done.returncode == 1
    assert message in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("monitor: "), done.stderr


def test_a_second_collector_is_refused_with_the_holder(store: Path) -> None:
    with StoreWriter(store, compaction="off"):
        done = monitor("collect", "--sim", "--store", str(store), "--duration", "1s")
    assert done.returncode == 1
    assert f"already being written by pid {os.getpid()}" in done.stderr


def test_sim_backfill_writes_simulated_history(tmp_path: Path) -> None:
    root = tmp_path / "hist"
    done = monitor("sim", "--backfill", "30s", "--store", str(root), "--seed", "3", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote 30 ticks" in done.stderr
    with StoreReader(root) as reader:
        row = reader.sql("SELECT count(*) AS n, count(DISTINCT gpu) AS g, count(DISTINCT ts) AS t FROM gpu")
        assert row.to_pylist() == [{"n": 30 * GPUS, "g": GPUS, "t": 30}]
        assert reader.sql("SELECT count(*) AS n FROM nvlink").to_pylist() == [{"n": 30 * GPUS * 18}]
    assert_no_duplicate_rows(root)


def test_collect_stops_cleanly_on_sigterm_after_a_last_flush(tmp_path: Path) -> None:
    root = tmp_path / "live"
    code = "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "collect", "--sim", "--store", str(root), "--flush", "1h"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # systemd-style: it says when the first frame is in
        if "first frame" in line:
            break
    # No segment exists yet (flush is 1 h): what lands on disk is the last flush on SIGTERM.
    assert read_manifest(root).of("gpu") == []
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, rest
    assert "received SIGTERM" in rest
    files = read_manifest(root).of("gpu")
    assert files, "the last flush sealed nothing"
    with StoreReader(root) as reader:
        row = reader.sql("SELECT count(*) AS n, count(DISTINCT gpu) AS g FROM gpu").to_pylist()[0]
        assert row["g"] == GPUS and row["n"] % GPUS == 0
        assert reader.sql("SELECT count(*) AS n FROM host").to_pylist()[0]["n"] >= 1
    assert_no_duplicate_rows(root)
