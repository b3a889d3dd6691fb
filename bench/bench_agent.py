"""`monitor agent` alone: its RSS and CPU while it answers a Prometheus (text) and our collector (Arrow).

Each agent runs the real console entry point on simulated tray 1 (tests/cli/sim_nvml_main.py puts a
simulated driver in place of pynvml; only the driver is simulated, and its SimRack is in the agent's
RSS, as a real driver's libraries would be). Once a second this script asks each agent for its text page
and for the tray Arrow stream, as a Prometheus and a collector would on a rack. With `--b-tree PATH` a
second agent from another checkout (e.g. the base commit in a `git worktree`) runs beside the first, on
the same machine state: compare those two, not runs apart. Issue 18's target: <= 50 MB, <= 1 % of a core.

Run: .venv/bin/python bench/bench_agent.py [--seconds 60] [--b-tree /tmp/base]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_soak import cpu_seconds, free_port, rss_mb, scrape_both

ROOT = Path(__file__).resolve().parents[1]


def start_agent(tree: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`monitor agent` from `tree` on simulated tray 1; its process and /metrics URL."""
    port = free_port()
    env = {**os.environ, "SIM_NVML_HOST": "tray:1", "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-m", "tests.cli.sim_nvml_main", "agent", "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/metrics"


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Wait until the agent answers (or fail if it exits first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            scrape_both(url)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the agent at {url} did not answer (exit {proc.poll()})") from None
            time.sleep(0.5)


def main() -> None:
    """Print each agent's RSS, peak RSS and CPU share after --seconds of scrapes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="seconds of scrapes")
    parser.add_argument("--b-tree", type=Path, help="a second checkout whose agent runs beside this one's")
    args = parser.parse_args()
    trees = [ROOT, *([args.b_tree.resolve()] if args.b_tree else [])]
    agents = [(tree, *start_agent(tree)) for tree in trees]
    try:
        for _tree, proc, url in agents:
            wait_up(url, proc)
        cpu0 = {proc.pid: cpu_seconds(proc.pid) for _tree, proc, _url in agents}
        start = time.monotonic()
        for second in range(args.seconds):
            for _tree, _proc, url in agents:
                scrape_both(url)
            time.sleep(max(0.0, start + second + 1 - time.monotonic()))
        elapsed = time.monotonic() - start
        load = os.getloadavg()[0]
        print(f"{args.seconds} s of scrapes (text + Arrow once a second); load average {load:.2f}")
        print("| tree | RSS MB | peak RSS MB | CPU % of one core |")
        print("|---|---|---|---|")
        for tree, proc, _url in agents:
            share = 100 * (cpu_seconds(proc.pid) - cpu0[proc.pid]) / elapsed
            peak = rss_mb(proc.pid, "VmHWM")
            print(f"| {tree} | {rss_mb(proc.pid):.1f} | {peak:.1f} | {share:.2f} |")
    finally:
        for _tree, proc, _url in agents:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
