"""A rack config's [keys]: `monitor doctor` refuses exactly what the TUI refuses, and the TUI's refusal is one
line with nothing left open (the scrape source's aiohttp session is closed on that path too).

Real config files and the real console entry point; the endpoints are a closed loopback port (doctor reports
them as not answering; the keys line is what is checked here).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_startup_failures import assert_one_clear_line
from tests.cli.test_store_commands import monitor

RACK = """\
[rack]
name = "r"
[[tray]]
tray = 1
url = "http://127.0.0.1:9/metrics"
[keys]
{keys}
"""


def config(tmp_path: Path, keys: str) -> Path:
    path = tmp_path / "rack.toml"
    path.write_text(RACK.format(keys=keys))
    return path


def doctor_keys_line(path: Path) -> str:
    done = monitor("doctor", "--config", str(path), timeout=60)
    return next(line for line in done.stdout.splitlines() if line.startswith("keys:"))


def test_an_unknown_action_is_refused_by_doctor_and_by_the_tui_in_one_line(tmp_path: Path) -> None:
    path = config(tmp_path, 'skew = "k"')  # the action id is skew-view
    done = monitor("doctor", "--config", str(path), timeout=60)
    assert done.returncode == 1
    assert f"keys: refused: {path}:7: keys.skew: unknown action" in done.stdout
    assert "refuses its [keys] table" in done.stderr
    tui = monitor("--config", str(path), timeout=60)
    assert_one_clear_line(tui, f"{path}:7", "keys.skew", "unknown action")
    assert "Unclosed" not in tui.stderr


@pytest.mark.parametrize(
    ("keys", "line"), [('skew-view = "k"', "keys: 1 key remapped, ok"), ("", "keys: defaults")]
)
def test_keys_the_tui_takes_pass_doctor(tmp_path: Path, keys: str, line: str) -> None:
    assert doctor_keys_line(config(tmp_path, keys)) == line
