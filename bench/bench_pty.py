"""Bytes written to the terminal and CPU of a real `monitor demo` in a real pty, per view. Prints its figures.

Runs `monitor demo --scenario steady` (1 Hz) in a pty of 200x50, lets it settle, then for the rack view
and the NVLink matrix measures over a window: bytes/s the app writes to the terminal (target <= 20 KiB/s)
and CPU of the whole process (simulator, 90 loopback HTTP servers, scraper, poller and TUI) and of its
main thread (the TUI's event loop; target <= 5 % of one core).

    .venv/bin/python bench/bench_pty.py [--seconds 20] [--settle 8] [--color auto|256|16|truecolor]
        [--rows N] [--dump DIR]

--rows N prints the N screen rows that took the most bytes in each view (Textual moves the cursor to
the start of every span it repaints, so bytes can be told apart by row); --dump DIR keeps the raw bytes.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def drain(fd: int, seconds: float, sink: list[bytes] | None = None) -> int:
    """Read everything the app writes for `seconds`; return the byte count (the bytes go to `sink`)."""
    total = 0
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            total += len(chunk)
            if sink is not None:
                sink.append(chunk)
    return total


CURSOR_MOVE = re.compile(rb"\x1b\[(\d+);(\d+)H")


def bytes_by_row(data: bytes) -> Counter[int]:
    """Bytes written per screen row (1-based), each cursor move and what follows it counted to its row."""
    rows: Counter[int] = Counter()
    row, start = 0, 0
    for move in CURSOR_MOVE.finditer(data):
        rows[row] += move.start() - start
        row, start = int(move.group(1)), move.start()
    rows[row] += len(data) - start
    return rows


def cpu_s(proc: psutil.Process) -> tuple[float, float]:
    """(process CPU seconds, main-thread CPU seconds)."""
    times = proc.cpu_times()
    main = next((t for t in proc.threads() if t.id == proc.pid), None)
    return times.user + times.system, (main.user_time + main.system_time) if main else float("nan")


def measure(
    fd: int, proc: psutil.Process, seconds: float, sink: list[bytes] | None = None
) -> tuple[float, float, float]:
    """(KiB/s written, process CPU %, main-thread CPU %) over `seconds`."""
    c0, m0 = cpu_s(proc)
    t0 = time.monotonic()
    written = drain(fd, seconds, sink)
    elapsed = time.monotonic() - t0
    c1, m1 = cpu_s(proc)
    return written / 1024 / elapsed, (c1 - c0) / elapsed * 100, (m1 - m0) / elapsed * 100


def main() -> None:
    """Start the demo in a pty, measure the rack view and the NVLink matrix, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per view")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds before measuring each view")
    parser.add_argument("--color", default="auto", help="--color passed to monitor demo")
    parser.add_argument("--rows", type=int, default=0, help="print the N rows that took the most bytes")
    parser.add_argument(
        "--dump", type=Path, help="write each view's measured bytes to DIR/<view>.bin (to see what is sent)"
    )
    args = parser.parse_args()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("COLORTERM", None)  # as over SSH, where COLORTERM is rarely forwarded
    cmd = [sys.executable, "-c", "from monitor.cli import main; main()", "demo", "--scenario", "steady"]
    child = subprocess.Popen(
        [*cmd, "--color", args.color], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env
    )
    os.close(slave)
    proc = psutil.Process(child.pid)
    print(f"monitor demo --scenario steady in a 200x50 pty, TERM=xterm-256color, --color {args.color}")
    print(f"{'view':<14} {'KiB/s':>8} {'CPU % (process)':>16} {'CPU % (TUI thread)':>19}")
    try:
        for view, key in (("rack", None), ("NVLink matrix", b"l")):
            if key:
                os.write(master, key)
            drain(master, args.settle)
            sink: list[bytes] = []
            kib, cpu, main_cpu = measure(master, proc, args.seconds, sink)
            if args.dump:
                args.dump.mkdir(parents=True, exist_ok=True)
                (args.dump / f"{view.split()[0].lower()}.bin").write_bytes(b"".join(sink))
            print(f"{view:<14} {kib:8.2f} {cpu:16.1f} {main_cpu:19.1f}")
            if args.rows:
                top = bytes_by_row(b"".join(sink)).most_common(args.rows)
                print("  bytes/s by row:", ", ".join(f"{r}: {n / args.seconds:.0f}" for r, n in top))
        print("targets: <= 20 KiB/s written, <= 5 % of one core for the TUI")
    finally:
        child.send_signal(signal.SIGHUP)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
        os.close(master)


if __name__ == "__main__":
    main()
