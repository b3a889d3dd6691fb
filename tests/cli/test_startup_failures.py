"""Start-up and I/O failures: one clear line, a non-zero exit, no traceback, nothing left open.

Real filesystems (a full and a read-only tmpfs), real config files and the real console entry point.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collectors.config import MAX_CONFIG_BYTES, ConfigError, load_config
from monitor.errors import UserError
from monitor.recording import Recording
from storage.head import Head
from storage.layout import StoreError
from storage.lock import WriterLock
from tests.cli.test_store_commands import monitor
from tests.mounts import fill, remount_read_only, tmpfs


def assert_one_clear_line(done, *words: str) -> None:
    """Exit 1, exactly one line on stderr naming `words`, no traceback and no leaked session."""
    assert done.returncode == 1, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("monitor: "), lines
    for word in words:
        assert word in lines[0], lines[0]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("command", [["collect", "--sim", "--duration", "2s"], ["demo"]])
def test_full_disk_at_start_is_one_line(tmp_path: Path, command: list[str]) -> None:
    with tmpfs(tmp_path / "disk", size="256k") as disk:
        fill(disk, leave=0)
        done = monitor(*command, "--store", str(disk / "store"), timeout=120)
    assert_one_clear_line(done, "No space left on device", "store")


def test_read_only_filesystem_is_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk") as disk:
        remount_read_only(disk)
        done = monitor("collect", "--sim", "--duration", "2s", "--store", str(disk / "store"), timeout=120)
    assert_one_clear_line(done, "Read-only file system", "store")


def test_existing_store_on_a_read_only_filesystem_is_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk") as disk:
        Recording(disk / "store", Head()).close()
        remount_read_only(disk)
        done = monitor("collect", "--sim", "--duration", "2s", "--store", str(disk / "store"), timeout=120)
    assert_one_clear_line(done, "Read-only file system")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o500)
    done = monitor("collect", "--sim", "--duration", "2s", "--store", str(parent / "store"), timeout=120)
    assert_one_clear_line(done, "Permission denied")


def test_a_full_disk_leaves_no_descriptor_and_no_lock_open(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="256k") as disk:
        (disk / "store").mkdir()
        fill(disk, leave=0)
        before = open_fds()
        with pytest.raises(StoreError, match="No space left"):
            WriterLock(disk / "store")
        with pytest.raises(UserError, match="No space left"):
            Recording(disk / "store", Head())
        assert open_fds() == before
        (disk / "filler").unlink()
        # Space is back: the same process can take the lock, so nothing still holds it.
        WriterLock(disk / "store").release()


def deep_toml(depth: int) -> str:
    return "a = " + "[" * depth + "]" * depth + "\n"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.write_text(deep_toml(5000)), ["nested too deeply"]),
        (lambda p: p.write_text("x = 1\n" * (MAX_CONFIG_BYTES // 4)), ["larger than 1024 KiB"]),
        (lambda p: p.write_bytes(b"\xff\xfe[rack]\n"), ["cannot read"]),
    ],
    ids=["nested", "huge", "not-utf8"],
)
def test_bad_config_files_are_one_line(tmp_path: Path, make, words: list[str]) -> None:
    path = tmp_path / "rack.toml"
    make(path)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "\n" not in str(err.value)
    done = monitor("collect", "--config", str(path), "--store", str(tmp_path / "store"), timeout=60)
    assert_one_clear_line(done, str(path), *words)
    assert not (tmp_path / "store").exists()


def test_config_from_an_endless_device_is_refused(tmp_path: Path) -> None:
    done = monitor("collect", "--config", "/dev/zero", "--store", str(tmp_path / "store"), timeout=60)
    assert_one_clear_line(done, "/dev/zero", "larger than")


def test_recording_says_when_it_stops_and_resumes(tmp_path: Path) -> None:
    """A disk that fills mid-run: a stopped event at once, a resumed one after, both kept in the store."""
    from storage.reader import StoreReader
    from storage.schemas import EventKind
    from tests.cli.test_recording import gpu_frame

    t0 = 1_700_000_000_000
    with tmpfs(tmp_path / "disk", size="4m") as disk:
        head = Head()
        kinds: list[str] = []
        with Recording(disk / "store", head, flush_s=1.0) as recording:
            watch = recording.sources[-1]

            def tick(n: int) -> None:
                frame = gpu_frame(t0 + n * 1000)
                recording.sink(frame)
                events = watch.poll(frame.ts_ms).batches.get("events")
                if events is not None:
                    assert not watch.poll(frame.ts_ms).batches  # a state change is told once
                    kinds.extend(events.column("kind").to_pylist())
                    recording.sink(type(frame)(frame.ts_ms, {"events": events}))

            for n in range(5):
                tick(n)
            assert kinds == []
            filler = fill(disk, leave=0)
            for n in range(5, 10):
                tick(n)
            assert kinds == [EventKind.RECORDING_STOPPED]
            filler.unlink()
            for n in range(10, 15):
                tick(n)
            assert kinds == [EventKind.RECORDING_STOPPED, EventKind.RECORDING_RESUMED]
        with StoreReader(disk / "store") as reader:
            stored = reader.sql("SELECT kind, detail FROM events ORDER BY ts").to_pylist()
            gpus = reader.sql("SELECT count(*) AS n FROM gpu").column("n")[0].as_py()
    assert [e["kind"] for e in stored] == kinds
    assert "No space left on device" in stored[0]["detail"]
    assert "nothing lost" in stored[1]["detail"]
    assert gpus == 15 * 4  # every frame held through the outage landed
