"""The recorder moves what start-up built out of the cyclic collector's generations (gc.freeze) once
the first frame is recorded: a rack's collector runs for months, and every collection otherwise walks
the modules, parsers and caches it built at start again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN = (
    "import atexit, gc, sys; from monitor.cli import main; "
    "atexit.register(lambda: print('frozen', gc.get_freeze_count(), file=sys.stderr)); "
    "sys.argv = ['monitor', *sys.argv[1:]]; main()"
)


def test_collect_freezes_what_start_up_built(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUN, "collect", "--sim", "--store", str(tmp_path / "s"), "--duration", "3s"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "first frame recorded" in done.stderr
    frozen = [line for line in done.stderr.splitlines() if line.startswith("frozen ")]
    assert frozen and int(frozen[-1].split()[1]) > 10_000, done.stderr[-2000:]
