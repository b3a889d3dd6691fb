"""The progress bar of export and report: drawn on a terminal (a real pty), never on a pipe.

MONITOR_PROGRESS_DELAY_S=0 makes the bar appear at once, so a quick command shows it without any
timing in the test; the default (1 s) only delays it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from monitor.progress import DELAY_ENV, Progress
from monitor.timespec import iso
from storage.writer import StoreWriter
from tests.post.conftest import MONITOR, ROOT, monitor
from tests.storage.synth import T0, frame

ERASE = "\r\x1b[K"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("progress") / "store"
    with StoreWriter(root, flush_interval_s=600, grace_s=0) as writer:
        for tick in range(120):
            writer.append(frame(tick, gpus=8, hist=True))
    return root


def _on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run `monitor *args` with stderr on a new pty (stdout on a pipe); (exit code, stdout, terminal text)."""
    master, slave = os.openpty()
    env = {**os.environ, "MONITOR_STORE": "", DELAY_ENV: "0"}
    child = subprocess.Popen(
        [sys.executable, "-c", MONITOR, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    seen = bytearray()

    def drain() -> None:  # read as it comes: a full pty buffer would block the child
        while True:
            try:
                block = os.read(master, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not block:
                return
            seen.extend(block)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = child.communicate(timeout=300)
    reader.join(timeout=30)
    os.close(master)
    return child.returncode, out.decode(), seen.decode(errors="replace")


def _window(store: Path) -> list[str]:
    return ["--store", str(store), "--since", iso(T0), "--until", iso(T0 + 119_000)]


def test_report_draws_a_bar_on_a_terminal_and_erases_it(small: Path) -> None:
    code, out, tty = _on_a_terminal("report", *_window(small))
    assert code == 0 and out.startswith("Rack report")
    assert ERASE + "report [" in tty and tty.endswith(ERASE), tty


def test_export_draws_a_bar_on_a_terminal(small: Path, tmp_path: Path) -> None:
    code, _, tty = _on_a_terminal("export", *_window(small), "-o", str(tmp_path / "b"))
    assert code == 0
    assert ERASE + "export" in tty and "monitor export: " in tty, tty


def test_no_bar_on_a_pipe(small: Path, tmp_path: Path) -> None:
    env = {DELAY_ENV: "0"}
    done = monitor("report", *_window(small), env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    done = monitor("export", *_window(small), "-o", str(tmp_path / "b"), env=env)
    assert done.returncode == 0
    assert "\r" not in done.stderr and done.stderr.startswith("monitor export: "), done.stderr
    assert done.stderr.count("\n") == 1


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_quick_command_draws_nothing() -> None:
    screen = FakeTerminal()
    with Progress("report", 3, stream=screen, delay_s=3600) as progress:
        progress.advance(3)
    assert screen.getvalue() == ""


def test_the_bar_counts_work_done() -> None:
    progress = Progress("export", 200, stream=io.StringIO(), delay_s=0)
    assert not progress.active  # not a terminal: no thread, nothing drawn
    progress.advance(50, "copying")
    assert progress.line().startswith("export [######------------------]  25%")
    assert progress.line().endswith(" s copying")
