"""End to end in a real terminal: `monitor demo --racks 4 --scenario gpu-lost@rack02 --speed 10` in tmux at
80x24 and 200x50. tmux is the terminal emulator: `capture-pane` prints what an operator's screen shows.
Bounded waits only (see tests/tui/test_rack_fits_terminal.py for the pattern).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOWN_S = 180.0
"""A generous bound for the fault (60 simulated s at --speed 10: 6 s) to be drawn on a busy 2-core machine."""
ENDED_S = 15.0
"""A bound for the demo to end once its terminal is gone: 3 s at load 7 with close() cancelling the
fetches, 19 s without (tests/net/test_close_ends_polls.py holds the cause itself)."""

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(socket: str, *args: str) -> str:
    """Run a tmux command on the test's own server socket; returns its stdout."""
    return subprocess.run(
        ["tmux", "-L", socket, *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


@pytest.mark.parametrize(("width", "height"), [(80, 24), (200, 50)])
def test_the_fleet_fits_and_names_the_faulty_rack(width: int, height: int) -> None:
    demo = [sys.executable, "-c", "from monitor.cli import main; main()", "demo", "--racks", "4"]
    demo += ["--scenario", "gpu-lost@rack02", "--seed", "7", "--speed", "10"]
    command = "exec " + " ".join(f"'{part}'" for part in demo)  # the pane's process is the demo
    socket = (
        f"rack-monitor-fleet-{width}x{height}-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one server per test
    )
    tmux(socket, "-f", "/dev/null", "new-session", "-d", "-x", str(width), "-y", str(height), "-c", str(ROOT),
         "-e", "TERM=xterm-256color", command)  # fmt: skip
    demo_pid = int(tmux(socket, "display-message", "-p", "#{pane_pid}"))
    screen = ""
    try:
        deadline = time.monotonic() + SHOWN_S
        while time.monotonic() < deadline:
            screen = tmux(socket, "capture-pane", "-p")
            if re.search(r"^ ?rack02 +CRIT", screen, re.MULTILINE) and "GPU lost" in screen:
                break
            time.sleep(0.5)
        lines = screen.splitlines()
        assert re.search(r"^ ?rack02 +CRIT", screen, re.MULTILINE), screen
        assert "GPU lost" in screen, screen  # on the summary line at 80 columns, in the table too at 200
        assert all(len(line) <= width for line in lines), screen
        header = next(line for line in lines if line.lstrip().startswith("rack "))
        for column in ("state", "GPUs", "kW", "tok/s", "hottest", "lnk dn", "srv dn", "alerts"):
            assert column in header, header  # every figure's column fits, even at 80 columns
        racks = re.findall(r"^ ?(rack0\d) +(?:CRIT|warn|ok|\.\.\.) ", screen, re.MULTILINE)  # table rows
        assert sorted(racks) == ["rack01", "rack02", "rack03", "rack04"], screen
        assert "open rack" in screen, screen  # the key line is on screen
        if width >= 200:
            assert re.search(r"rack02 .*GPU lost", screen), screen
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)
        ended = wait_until_gone(demo_pid, ENDED_S)
        if not ended:
            os.kill(demo_pid, signal.SIGKILL)
    # The terminal went away (a dropped SSH session): the demo must end, not linger at exit joining
    # its racks' poll threads (it once did, at 80-90 % of a core, for over an hour).
    assert ended, f"monitor demo --racks 4 outlived its terminal by {ENDED_S:g} s"


def wait_until_gone(pid: int, within_s: float) -> bool:
    """Whether process `pid` ended (gone, or a zombie nobody reaped) within `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False
