"""A bundle build killed with SIGKILL leaves its temp directory; the next build of that target removes it.

`monitor export` and `monitor snapshot` build their directory in a temp sibling (storage.atomic.build_dir).
A kill -9 used to leave that sibling, up to a whole bundle, for good. Real processes, real signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage.atomic import BUILDER_LOCK, build_dir, remove_abandoned

ROOT = Path(__file__).resolve().parents[2]
READY_S = 60.0
"""A generous bound for the child to start building on a busy machine."""

BUILDER = """
import sys, time
from pathlib import Path
from storage.atomic import build_dir

def fill(d: Path) -> None:
    (d / "part.parquet").write_bytes(b"x" * 1000)
    Path(sys.argv[2]).write_text("filling")
    time.sleep(600)

build_dir(Path(sys.argv[1]), force=True, fill=fill)
"""


def start_builder(final: Path, ready: Path) -> subprocess.Popen[bytes]:
    """A child building `final`, paused inside its fill (it has written `ready` by then)."""
    child = subprocess.Popen([sys.executable, "-c", BUILDER, str(final), str(ready)], cwd=ROOT)
    deadline = time.monotonic() + READY_S
    while not ready.exists() and time.monotonic() < deadline:
        assert child.poll() is None, "the builder died before filling"
        time.sleep(0.05)
    assert ready.exists(), "the builder never started filling"
    return child


def temps(final: Path) -> list[Path]:
    return sorted(final.parent.glob(f".{final.name}.*.tmp"))


def test_a_killed_build_is_removed_by_the_next_and_a_running_one_is_not(tmp_path: Path) -> None:
    final = tmp_path / "bundle"
    child = start_builder(final, tmp_path / "ready")
    try:
        (running,) = temps(final)
        assert remove_abandoned(final) == []  # its builder holds the lock: in use, left alone
        assert running.is_dir()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert temps(final) == [running]  # what kill -9 leaves
    build_dir(final, force=False, fill=lambda d: (d / "new.parquet").write_bytes(b"y"))
    assert temps(final) == []
    assert sorted(p.name for p in final.iterdir()) == ["new.parquet"]


def test_a_tree_moved_aside_by_a_killed_replace_is_put_back(tmp_path: Path) -> None:
    """Killed between moving the old bundle aside and renaming the new one in: the old one returns."""
    final = tmp_path / "bundle"
    work = tmp_path / ".bundle.k1ll3d.tmp"
    (work / "old").mkdir(parents=True)
    (work / "old" / "kept.parquet").write_bytes(b"old")
    (work / "new").mkdir()
    (work / BUILDER_LOCK).write_bytes(b"")
    assert remove_abandoned(final) == [work]
    assert (final / "kept.parquet").read_bytes() == b"old"
    assert temps(final) == []


def test_only_build_dir_directories_of_this_target_are_touched(tmp_path: Path) -> None:
    final = tmp_path / "bundle"
    unlocked = tmp_path / ".bundle.someone.tmp"  # named alike, but not build_dir's (no lock file)
    unlocked.mkdir()
    other = tmp_path / ".other.abc.tmp"  # another target's
    other.mkdir()
    (other / BUILDER_LOCK).write_bytes(b"")
    link = tmp_path / ".bundle.link.tmp"
    os.symlink(other, link)
    assert remove_abandoned(final) == []
    assert unlocked.is_dir() and other.is_dir() and link.is_symlink()
