"""A DuckDB connection's private spill directory never outlives it, closed or dropped."""

from __future__ import annotations

import gc
import subprocess
import sys
import tempfile
from pathlib import Path

from storage.sandbox import LockedConnection


def _spill_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("rack-monitor-duckdb-*"))


def test_close_removes_the_spill_directory(tmp_path: Path) -> None:
    before = _spill_dirs()
    locked = LockedConnection([tmp_path])
    made = _spill_dirs() - before
    assert len(made) == 1 and next(iter(made)).is_dir()
    locked.close()
    assert not (made & _spill_dirs())


def test_a_connection_dropped_without_close_removes_it_when_collected(tmp_path: Path) -> None:
    before = _spill_dirs()
    locked = LockedConnection([tmp_path])
    made = _spill_dirs() - before
    del locked
    gc.collect()
    assert made and not (made & _spill_dirs())


def test_a_process_that_exits_with_it_open_leaves_nothing(tmp_path: Path) -> None:
    # The reader a command or the TUI keeps until exit: the directory goes with the interpreter.
    code = (
        "import sys, pathlib\n"
        "from storage.sandbox import LockedConnection\n"
        "keep = LockedConnection([pathlib.Path(sys.argv[1])])\n"
        "print(keep._spill)\n"
    )
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-c", code, str(tmp_path)]
    run = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    spill = Path(run.stdout.strip())
    assert spill.name.startswith("rack-monitor-duckdb-") and not spill.exists()
