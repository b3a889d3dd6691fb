"""A dropped terminal ends `monitor demo`: SIGHUP to the real process in a real pty (bounded waits only)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from monitor.tui.hangup import terminal_gone

ROOT = Path(__file__).resolve().parents[2]
STARTED_S = 60.0
"""A generous bound for the demo to draw its first screen on a busy 2-core machine."""
ENDED_S = 20.0
"""A generous bound for 'it ended' after the hang-up."""


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    """Read the pty until `needle` appears (or timeout passes); returns what was read."""
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="pty and SIGHUP semantics as on the head nodes")
def test_sighup_ends_monitor_demo():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from monitor.cli import main; main()", "demo", "--seed", "3"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        screen = read_until(master, b"GPUs ok", STARTED_S)
        assert b"GPUs ok" in screen, "the demo never drew its totals bar"
        proc.send_signal(signal.SIGHUP)
        # Keep draining so the app never blocks on a full pty while it exits.
        read_until(master, b"\0never\0", 1.0)
        assert proc.wait(timeout=ENDED_S) is not None
        assert proc.returncode == 0  # a clean exit through app.exit(), not death by the signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_terminal_gone_notices_a_closed_descriptor():
    r, w = os.pipe()
    assert terminal_gone((r,))  # a pipe is not a terminal
    os.close(r)
    os.close(w)
    assert terminal_gone((r,))  # a closed descriptor raises inside: gone
    master, slave = pty.openpty()
    try:
        assert not terminal_gone((slave,))
    finally:
        os.close(master)
        os.close(slave)
