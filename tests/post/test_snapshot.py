"""monitor snapshot: atomic capture, exit codes for schedulers, pruning, a lock, beside a collector."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from collectors.rack import GPUS
from monitor.snapshot import EXIT_UNHEALTHY, prune, sim_capture, snapshot
from storage.lock import WriterLock
from storage.reader import StoreReader
from tests.post.conftest import MONITOR, ROOT, monitor, one_line_error


def snapshots(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("snapshot-"))


def test_a_healthy_rack_is_written_quietly(tmp_path: Path) -> None:
    out = tmp_path / "snaps"
    done = monitor("snapshot", "--sim", "--out", str(out), "--check")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    names = snapshots(out)
    assert len(names) == 2 and names[1] == names[0] + ".json"
    doc = json.loads((out / names[1]).read_text())
    assert doc["healthy"] is True and doc["issues"] == [] and doc["expected_gpus"] == GPUS
    # Two samples one second apart, so the rates are real rates.
    assert 1.0e6 < doc["summary"]["serving"]["tokens_per_s"] < 1.2e6
    with StoreReader(out / names[0]) as reader:
        ticks = reader.sql("SELECT count(DISTINCT ts) AS t, count(*) AS n FROM gpu").to_pylist()
    assert ticks == [{"t": 2, "n": 2 * GPUS}]
    assert not (out / names[0] / "LOCK").exists()


@pytest.mark.parametrize(
    ("scenario", "says"),
    [
        ("gpu-lost", "GPU(s) not OK: "),
        ("thermal", "in thermal slowdown"),
        ("straggler", "HW slowdown/power brake"),
    ],
)
def test_check_exits_2_on_an_unhealthy_rack(tmp_path: Path, scenario: str, says: str) -> None:
    out = tmp_path / "snaps"
    done = monitor("snapshot", "--sim", "--scenario", scenario, "--seed", "1", "--out", str(out), "--check")
    assert done.returncode == EXIT_UNHEALTHY, done.stderr
    assert done.stderr.count("\n") == 1 and "unhealthy: " in done.stderr and says in done.stderr
    assert len(snapshots(out)) == 2  # written all the same
    without = monitor("snapshot", "--sim", "--scenario", scenario, "--seed", "1", "--out", str(out))
    assert (without.returncode, without.stderr) == (0, "")


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    out = tmp_path / "snaps"
    for i in range(4):
        result = snapshot(out, sim_capture("steady", 0, 1.0, now_s=1_750_000_000 + 60 * i), keep=2)
    assert result.pruned == 1
    names = snapshots(out)
    assert names == [
        "snapshot-20250615T150840.000Z",
        "snapshot-20250615T150840.000Z.json",
        "snapshot-20250615T150940.000Z",
        "snapshot-20250615T150940.000Z.json",
    ]
    (out / "notes.txt").write_text("mine")
    (out / "snapshot-notes").mkdir()
    assert prune(out, 1) == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "LOCK",
        "notes.txt",
        "snapshot-20250615T150940.000Z",
        "snapshot-20250615T150940.000Z.json",
        "snapshot-notes",
    ]


def test_overlapping_runs_do_not_collide(tmp_path: Path) -> None:
    out = tmp_path / "snaps"
    out.mkdir()
    lock = WriterLock(out)
    try:
        done = monitor("snapshot", "--sim", "--out", str(out))
    finally:
        lock.release()
    one_line_error(done, "another snapshot run (pid ")
    assert snapshots(out) == []


def test_snapshot_beside_a_running_collector(tmp_path: Path) -> None:
    store, out = tmp_path / "store", tmp_path / "snaps"
    proc = subprocess.Popen(
        [sys.executable, "-c", MONITOR, "collect", "--sim", "--store", str(store), "--flush", "1s"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "first frame recorded" in line:
                break
        done = monitor("snapshot", "--sim", "--out", str(out), "--check")
        assert (done.returncode, done.stderr) == (0, "")
        query = monitor(
            "query", "--store", str(store), "SELECT count(*) > 0 AS rows FROM gpu", "--format", "json"
        )
        assert query.returncode == 0, query.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert len(snapshots(out)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/s"], "pass exactly one of --config FILE or --sim"),
        (
            ["--sim", "--config", "{tmp}/rack.toml", "--out", "{tmp}/s"],
            "pass exactly one of --config FILE or --sim",
        ),
        (["--sim", "--keep", "0", "--out", "{tmp}/s"], "--keep must be at least 1"),
        (["--sim", "--interval", "soon", "--out", "{tmp}/s"], "bad --interval 'soon'"),
        (["--sim", "--scenario", "fire", "--out", "{tmp}/s"], "unknown scenario 'fire'"),
        (["--config", "{tmp}/missing.toml", "--out", "{tmp}/s"], "missing.toml: no such file"),
        (["--sim", "--out", "{tmp}/link"], "is a symlink"),
        (["--sim", "--out", "{tmp}/file/s"], "snapshot to {tmp}/file/s failed"),
    ],
)
def test_failures_exit_1_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    done = monitor("snapshot", *(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 1
    one_line_error(done, message.format(tmp=tmp_path))
    assert list((tmp_path / "real").iterdir()) == []
