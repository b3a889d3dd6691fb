"""End to end in a real terminal: `monitor demo --scenario gpu-lost --seed 7 --speed 5` in an 80x24 tmux
pane. tmux is the terminal emulator: what `capture-pane` prints is what an operator's screen shows, after
every byte the app wrote was interpreted. Bounded waits only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOWN_S = 120.0
"""A generous bound for the fault (60 simulated s at --speed 5: 12 s) to be drawn on a busy 2-core machine."""

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(*args: str) -> str:
    """Run a tmux command on the test's own server socket; returns its stdout."""
    return subprocess.run(
        ["tmux", "-L", SOCKET, *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


SOCKET = f"rack-monitor-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def test_the_lost_gpu_on_t18_is_on_an_80x24_screen_with_the_alert_bar():
    demo = [sys.executable, "-c", "from monitor.cli import main; main()", "demo"]
    demo += ["--scenario", "gpu-lost", "--seed", "7", "--speed", "5"]
    command = " ".join(f"'{part}'" for part in demo)
    env = {"TERM": "xterm-256color"}
    tmux("-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-c", str(ROOT),
         "-e", f"TERM={env['TERM']}", command)  # fmt: skip
    screen = ""
    try:
        deadline = time.monotonic() + SHOWN_S
        while time.monotonic() < deadline:
            screen = tmux("capture-pane", "-p")
            if re.search(r"T18 .*LOST", screen) and "ALERT" in screen:
                break
            time.sleep(0.5)
        lines = screen.splitlines()
        assert re.search(r"T18 .*LOST", screen), screen
        assert "ALERT" in lines[1], screen  # the alert bar is showing, and T18 is still there
        trays = sorted(set(re.findall(r"^(T\d\d) ", screen, re.MULTILINE)))
        assert trays == [f"T{t:02d}" for t in range(1, 19)], screen
        assert re.search(r"^SW ", screen, re.MULTILINE), screen
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True, timeout=30)
