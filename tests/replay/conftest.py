"""A simulated history for the replay tests, backfilled once per session on a fixed clock and seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.backfill import backfill
from tests.store_checks import assert_no_duplicate_rows

ROOT = Path(__file__).resolve().parents[2]
END_S = 1_750_000_000
"""The last tick of the backfill: 2025-06-15T15:06:40Z."""
SECONDS = 200
SEED = 1
SCENARIO = "straggler"
MONITOR = "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()"


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 s of the simulated rack (seed 1, straggler), ticks 2025-06-15T15:03:21Z..15:06:40Z."""
    root = tmp_path_factory.mktemp("replay") / "store"
    backfill(root, SECONDS, scenario=SCENARIO, seed=SEED, end_s=END_S)
    assert_no_duplicate_rows(root)
    return root


def monitor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a subprocess (real UserError handling and exit codes)."""
    full_env = {**os.environ, "MONITOR_STORE": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", MONITOR, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )
