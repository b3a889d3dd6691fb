"""Simulated histories for the post-incident commands, backfilled once per session on a fixed clock."""

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
"""The last tick of every backfill: 2025-06-15T15:06:40Z."""
SEED = 1
MONITOR = "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()"


def history(factory: pytest.TempPathFactory, scenario: str, seconds: float) -> Path:
    """A store holding `seconds` of the simulated rack in `scenario`, ending at END_S."""
    root = factory.mktemp(scenario) / "store"
    backfill(root, seconds, scenario=scenario, seed=SEED, end_s=END_S)
    assert_no_duplicate_rows(root)
    return root


@pytest.fixture(scope="session")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return history(tmp_path_factory, "steady", 180)


@pytest.fixture(scope="session")
def straggler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The fault starts 60 s in; four more minutes make the slow GPU plain against its peers.
    return history(tmp_path_factory, "straggler", 300)


@pytest.fixture(scope="session")
def thermal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 60 s healthy, a 120 s coolant ramp, then three minutes throttled.
    return history(tmp_path_factory, "thermal", 360)


@pytest.fixture(scope="session")
def nvlink_flap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 60 s healthy, 45 s of a flapping link, then that link down for 95 s.
    return history(tmp_path_factory, "nvlink-flap", 200)


@pytest.fixture(scope="session")
def gpu_lost(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return history(tmp_path_factory, "gpu-lost", 150)


def monitor(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path = ROOT,
    umask: int = -1,
) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a subprocess (so UserError handling and exit codes are real).

    `cwd` and `umask` (-1: this process's) are the child's.
    """
    full_env = {**os.environ, "MONITOR_STORE": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", MONITOR, *args],
        cwd=cwd,
        umask=umask,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def one_line_error(done: subprocess.CompletedProcess[str], contains: str) -> None:
    """Assert a failed run said exactly one line, starting 'monitor: ', containing `contains`."""
    assert done.returncode != 0, done.stdout
    assert done.stderr.startswith("monitor: ") and done.stderr.count("\n") == 1, done.stderr
    assert contains in done.stderr, done.stderr
