"""Faults: kill -9 of the writer, readers racing the compactor, a full disk."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from storage.layout import Manifest, read_manifest
from storage.reader import StoreReader
from storage.writer import StoreWriter
from tests.mounts import fill, tmpfs
from tests.storage.synth import GPUS, T0, frame
from tests.store_checks import assert_no_duplicate_rows

ROOT = Path(__file__).resolve().parents[2]
STEP_MS = 10_000
"""Each synthetic tick is 10 s of data time, so hours (and compactions) complete every 360 ticks."""
FLUSH_S = 60.0


SLOW_MANIFEST_S = 0.02
"""Each manifest write stops halfway this long in the kill test's writer (a slow disk), so that many
kills land inside one: the test then fails if the manifest is ever written in place."""
READER_GRACE_S = 30.0
"""Superseded files outlive a reader's round by far, even on a loaded machine."""


def start_child(
    store: Path,
    grace_s: float,
    max_ticks: int | None = None,
    *,
    slow_manifest: bool = False,
    paced: bool = False,
) -> subprocess.Popen[str]:
    """Start tests/storage/writer_child.py; `paced`: it writes one tick per line on its stdin."""
    args = [sys.executable, "-m", "tests.storage.writer_child", str(store), str(STEP_MS), str(FLUSH_S)]
    args.append(str(grace_s))
    if max_ticks is not None:
        args.append(str(max_ticks))
    env = {**os.environ, "WRITER_CHILD_PACED": "1" if paced else "0"}
    if slow_manifest:
        env["WRITER_CHILD_SLOW_MANIFEST_S"] = str(SLOW_MANIFEST_S)
    stdin = subprocess.PIPE if paced else subprocess.DEVNULL
    return subprocess.Popen(
        args, cwd=ROOT, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def check_store(store: Path) -> tuple[int, int]:
    """Every listed file reads, rows are whole ticks, ts contiguous from T0; return (ticks, last ts)."""
    with StoreReader(store) as reader:
        row = reader.sql(
            "SELECT count(*) AS n, count(DISTINCT ts) AS d, epoch_ms(min(ts)) AS lo, epoch_ms(max(ts)) AS hi,"
            " sum(energy_mj) AS e, count(util_gpu_pct) AS u FROM gpu"
        ).to_pylist()[0]
        for rollup in ("gpu_1m", "gpu_1h"):
            reader.sql(f"SELECT count(*), sum(energy_mj_last), avg(util_gpu_pct_mean) FROM {rollup}")
        sealed = reader.manifest.sealed_through_ms
    if row["d"] == 0:
        return 0, T0 - STEP_MS
    assert row["n"] == GPUS * row["d"], "duplicated or partial rows"
    assert row["lo"] == T0
    assert (row["hi"] - row["lo"]) // STEP_MS + 1 == row["d"], "a gap: a sealed file went missing"
    assert row["hi"] == sealed
    assert row["u"] == row["n"]
    return row["d"], row["hi"]


def test_kill_9_at_random_moments_loses_at_most_one_flush_interval(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rng = random.Random(7)
    kills = 0
    for _ in range(22):
        child = start_child(store, grace_s=0.5, slow_manifest=True)
        assert child.stdout is not None
        acked = None
        for _ in range(rng.randint(3, 500)):
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"writer died on its own: {child.stderr.read() if child.stderr else ''}")
            acked = int(line)
        # The writer runs on meanwhile; a random moment later it is often inside a (slow) manifest write.
        time.sleep(rng.uniform(0, 0.1))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
        kills += 1
        _ticks, last = check_store(store)
        assert acked is not None
        # The unsealed buffer spans less than one flush interval of data.
        assert acked - last <= FLUSH_S * 1000, f"lost {acked - last} ms of data, more than one flush"
    assert kills >= 20
    assert_no_duplicate_rows(store)  # restarts and compaction after kills never store a tick twice
    manifest = read_manifest(store)
    assert any(f.level == "hour" for f in manifest.files), "the kills never met a compacted store"
    with StoreWriter(store, compaction="off"):
        assert not list(store.rglob("*.tmp"))


def gpu_rows_of(store: Path, manifest: Manifest) -> int:
    """Rows of the gpu files `manifest` lists, read by plain DuckDB: no refresh, no retry."""
    files = [str(store / f.path) for f in manifest.of("gpu")]
    return duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r})").fetchall()[0][0]


def test_reader_loop_sees_no_error_and_no_wrong_count_while_segments_seal_and_compact(tmp_path: Path) -> None:
    """Readers race the writer and its compactor, and a reader that loaded an older manifest can
    still read every file it lists: superseded files outlive the grace period.

    The writer is paced by the test (one round of ticks released per query, each round holding a
    flush), so each query sees a newer manifest however loaded the machine is, and the precondition
    below holds by construction; within a round the writer and the reader run at the same time.
    """
    store = tmp_path / "store"
    seed = start_child(store, grace_s=READER_GRACE_S, max_ticks=2)
    seed.communicate(timeout=60)
    child = start_child(store, grace_s=READER_GRACE_S, paced=True)
    assert child.stdin is not None and child.stdout is not None
    ticks_per_round = int(FLUSH_S * 1000 // STEP_MS)  # one flush (and its compactions) per round
    rounds = 2 * 3_600_000 // (ticks_per_round * STEP_MS) + 30  # two whole hours compacted, and then some
    generations = set()
    hours_seen = 0
    try:
        reader = StoreReader(store)
        older: tuple[Manifest, int] | None = None
        for _ in range(rounds):
            child.stdin.write("\n" * ticks_per_round)
            child.stdin.flush()  # the writer seals and compacts these ticks while the reader queries
            row = reader.sql(
                "SELECT count(*) AS n, count(DISTINCT ts) AS d, epoch_ms(min(ts)) AS lo,"
                " epoch_ms(max(ts)) AS hi FROM gpu"
            ).to_pylist()[0]
            manifest = reader.manifest
            generations.add(manifest.generation)
            hours_seen = max(hours_seen, sum(f.level == "hour" for f in manifest.files))
            assert row["n"] == GPUS * row["d"]
            assert row["lo"] == T0
            assert (row["hi"] - row["lo"]) // STEP_MS + 1 == row["d"]
            assert row["hi"] == manifest.sealed_through_ms
            if older is not None:
                # StoreReader retries once when a file vanished, so only a reader without that retry
                # shows whether the files of the manifest it loaded a round ago are still there.
                assert gpu_rows_of(store, older[0]) == older[1], "a listed file changed or vanished"
            older = (manifest, row["n"])
            for _ in range(ticks_per_round):
                assert child.stdout.readline(), f"writer died: {child.stderr.read() if child.stderr else ''}"
        reader.close()
    finally:
        child.kill()
        child.communicate()
    assert len(generations) > 50, "the writer barely published during the loop"
    assert hours_seen >= 2, "no compaction happened during the loop"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs (root only); skipped where mounting is not allowed."""
    with tmpfs(tmp_path / "mnt") as mnt:
        yield mnt


def _run_full_disk(store: Path, make_full, make_room, caplog: pytest.LogCaptureFixture) -> None:
    """Shared scenario: write, fill the disk, keep the live view, free space, resume without loss."""
    caplog.set_level(logging.INFO, logger="storage")
    writer = StoreWriter(store, flush_interval_s=FLUSH_S, compaction="inline", grace_s=0)
    tick = 0
    for _ in range(30):
        writer.append(frame(tick, STEP_MS))
        tick += 1
    assert writer.status.last_error is None
    make_full()
    version = writer.head.version
    for _ in range(60):
        writer.append(frame(tick, STEP_MS))
        tick += 1
    assert writer.head.version == version + 60, "the live view stopped"
    assert writer.status.last_error is not None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, "the error must be reported once, not per flush"
    assert writer.status.pending_rows > 0
    make_room()
    for _ in range(15):
        writer.append(frame(tick, STEP_MS))
        tick += 1
    assert writer.status.last_error is None
    writer.close()
    ticks, _ = check_store(store)
    assert ticks == tick


def test_full_disk_tmpfs(small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = small_disk / "store"
    filler: list[Path] = []
    _run_full_disk(
        store,
        lambda: filler.append(fill(small_disk, leave=4096)),
        lambda: filler.pop().unlink(),
        caplog,
    )


def test_full_disk_injected(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    real_fsync = os.fsync
    full = {"on": False}

    def fsync(fd: int) -> None:
        if full["on"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _run_full_disk(tmp_path / "store", lambda: full.update(on=True), lambda: full.update(on=False), caplog)
