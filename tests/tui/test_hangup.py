"""A dropped terminal ends `monitor demo`: SIGHUP to the real process in a real pty, a pty that hangs up
with no signal, and an app wedged as Textual's is once its output thread died on the dead pty
(monitor/tui/hangup.py). Bounded waits only."""

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

from monitor.tui.hangup import GRACE_S, Teardown, terminal_gone

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


WEDGED_APP = """
import os, sys, threading
from pathlib import Path
from monitor.tui.hangup import Teardown, run_until_hangup

class Wedged:
    # A Textual app whose output thread died on the hung-up pty: run() blocks for good on the full
    # output queue (as its event loop does), and the exit it is asked for never comes.
    def run(self):
        os.write(1, b'running\\n')  # one write: a print's newline could meet the hung-up pty
        threading.Event().wait()

    def exit(self):
        pass

run_until_hangup(Wedged(), Teardown(lambda: Path(sys.argv[1]).write_text('sealed')))
"""


def start_in_pty(argv: list[str], rows: int = 24, cols: int = 80) -> tuple[subprocess.Popen[bytes], int]:
    """`argv` on a new pty of `rows` x `cols`, which is not its controlling terminal: closing the master
    sends no SIGHUP. Returns the process and the master's descriptor."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env={**os.environ, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(slave)
    return proc, master


def end(proc: subprocess.Popen[bytes], master: int) -> None:
    """Kill `proc` if it is still there; close `master` unless the test closed it (-1)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if master >= 0:
        os.close(master)


@pytest.mark.skipif(sys.platform != "linux", reason="pty and SIGHUP semantics as on the head nodes")
@pytest.mark.parametrize("how", ["sighup", "pty closed"])
def test_a_wedged_app_still_ends_and_its_teardown_runs(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "teardown"
    proc, master = start_in_pty([sys.executable, "-c", WEDGED_APP, str(marker)])
    try:
        assert b"running\r\n" in read_until(master, b"running\r\n", STARTED_S)
        if how == "sighup":
            proc.send_signal(signal.SIGHUP)
        else:  # an SSH session that drops: the pty hangs up; only the terminal check can notice
            os.close(master)
            master = -1
        assert proc.wait(timeout=ENDED_S) == 0, "the process outlived its terminal"
        assert marker.read_text() == "sealed"  # the command's teardown ran before the process ended
    finally:
        end(proc, master)


@pytest.mark.skipif(sys.platform != "linux", reason="pty semantics as on the head nodes")
def test_a_pty_that_hangs_up_without_a_signal_ends_monitor_demo() -> None:
    demo = [sys.executable, "-c", "from monitor.cli import main; main()", "demo", "--seed", "3"]
    proc, master = start_in_pty(demo)
    try:
        screen = read_until(master, b"GPUs ok", STARTED_S)
        assert b"GPUs ok" in screen, "the demo never drew its totals bar"
        os.close(master)  # Textual's output thread dies on its next write (EIO); no SIGHUP comes
        master = -1
        assert proc.wait(timeout=ENDED_S) is not None
    finally:
        end(proc, master)


def test_teardown_runs_each_step_once_and_raises_the_first_error() -> None:
    ran: list[str] = []

    def stop_poller() -> None:
        ran.append("poller")
        raise OSError("disk full")

    teardown = Teardown(stop_poller, lambda: ran.append("recording"))
    with pytest.raises(OSError, match="disk full"):
        teardown()
    teardown()  # the guard's call after the command's: nothing runs twice
    assert ran == ["poller", "recording"]
    assert GRACE_S < ENDED_S  # the bound above leaves the guard its grace
