"""The recorder's CPU split into its own threads and its compaction children, over time.

Run: .venv/bin/python bench/bench_recorder_cpu.py [--seconds 300] [--every 15]

Starts `monitor sim --write-config` and `monitor collect --config ... --store DIR` (a temporary store), and
every --every seconds prints the collector's own CPU (utime + stime) and the CPU of the children it waited
for (cutime + cstime: the compaction processes of storage/compaction_process.py) as ms per second of wall
time, i.e. ms per 1 Hz tick. A 60 s figure of `bench_remote_write.py --collect` holds 0 or 1 child; this
shows how often they come and what each costs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_soak import cpu_split as cpu_s  # (own, waited-for children's) CPU seconds, from /proc


def main() -> None:
    """Run the simulator and the recorder, print the split every --every seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--every", type=int, default=15)
    args = parser.parse_args()
    monitor = str(Path(sys.executable).parent / "monitor")
    work = Path(tempfile.mkdtemp(prefix="bench-recorder-cpu-"))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sim = subprocess.Popen([monitor, "sim", "--write-config", str(work / "rack.toml")], **quiet)
    recorder = None
    try:
        time.sleep(8)
        recorder = subprocess.Popen(
            [monitor, "collect", "--config", str(work / "rack.toml"), "--store", str(work / "store")], **quiet
        )
        began = before_t = time.monotonic()
        before = cpu_s(recorder.pid)
        print("| s | own ms/tick | children ms/tick | load1 |\n|---|---|---|---|")
        while time.monotonic() - began < args.seconds:
            time.sleep(args.every)
            now, now_t = cpu_s(recorder.pid), time.monotonic()
            wall = now_t - before_t
            own, kids = ((now[i] - before[i]) * 1000 / wall for i in (0, 1))
            print(f"| {now_t - began:.0f} | {own:.1f} | {kids:.1f} | {os.getloadavg()[0]:.2f} |", flush=True)
            before, before_t = now, now_t
    finally:
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(30)
        sim.terminate()
        sim.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
