"""A dropped terminal, again and again: `monitor demo --racks 4` in tmux, the tmux server killed once the
fault is on screen, and how long the process takes to end after it (monitor/tui/hangup.py says why it
once did not).

Run: .venv/bin/python bench/bench_hangup.py [--runs 10] [--burn 2]

Each run starts the demo in its own tmux server (80x24), waits for rack02's row to turn CRIT, kills the
server (the pty hangs up, as when an SSH session drops) and polls /proc until the process is gone.
The demo runs with a thread hook that notes, in a file, any thread that dies of an exception: Textual's
output thread dying on the dead pty is how the process used to wedge. `--burn N` keeps N busy-looping
processes beside it (a loaded machine, where the wedge showed). A run whose process outlives LIMIT_S is
killed and counted as stuck.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 40.0
HOOK = """
import sys, threading
deaths = open(sys.argv.pop(1), "w")
def noted(args):
    deaths.write(f"{args.thread.name}: {args.exc_value!r}\\n"); deaths.flush()
threading.excepthook = noted
from monitor.cli import main
main()
"""


def tmux(server: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", server, *args], check=True, capture_output=True, text=True).stdout


def one_run(deaths: Path) -> tuple[float | None, float | None]:
    """(seconds until the fault was drawn, seconds from the hang-up until the process was gone: None
    when it outlived LIMIT_S)."""
    demo = [sys.executable, "-c", HOOK, str(deaths), "demo", "--racks", "4"]
    demo += ["--scenario", "gpu-lost@rack02", "--seed", "7", "--speed", "10"]
    server = f"bench-hangup-{uuid.uuid4().hex[:8]}"
    tmux(server, "-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-c", str(ROOT),
         "-e", "TERM=xterm-256color", "exec " + " ".join(f"'{part}'" for part in demo))  # fmt: skip
    pid = int(tmux(server, "display-message", "-p", "#{pane_pid}"))
    started, shown = time.monotonic(), None
    while time.monotonic() - started < 120 and shown is None:
        if re.search(r"^ ?rack02 +CRIT", tmux(server, "capture-pane", "-p"), re.MULTILINE):
            shown = time.monotonic() - started
        time.sleep(0.5)
    subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True)
    hung_up = time.monotonic()
    while time.monotonic() - hung_up < LIMIT_S:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return shown, time.monotonic() - hung_up
        if state == "Z":
            return shown, time.monotonic() - hung_up
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return shown, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--burn", type=int, default=0, help="Busy-looping processes beside the demo.")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench_hangup: tmux is not installed")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burn)]
    ended: list[float] = []
    stuck = died = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(args.runs):
                deaths = Path(tmp) / f"deaths-{run}"
                shown, gone = one_run(deaths)
                lost = deaths.read_text().strip() if deaths.exists() else ""
                died += bool(lost)
                stuck += gone is None
                ended += [gone] if gone is not None else []
                took = f"NOT within {LIMIT_S:g} s" if gone is None else f"{gone:.1f} s"
                drawn = f"{shown:.1f} s" if shown is not None else "never"
                print(f"run {run}: fault drawn after {drawn}, ended {took} after the hang-up"
                      f"{'; ' + lost if lost else ''}", flush=True)  # fmt: skip
    finally:
        for burner in burners:
            burner.kill()
    load = os.getloadavg()[0]
    spread = f"median {statistics.median(ended):.1f} s, max {max(ended):.1f} s" if ended else "none ended"
    print(
        f"{args.runs} runs, {args.burn} burners, load {load:.1f}: ended {spread}; "
        f"stuck {stuck}; a thread died of an exception in {died}"
    )


if __name__ == "__main__":
    main()
