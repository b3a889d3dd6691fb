"""Soak: the simulated rack, the live client in a 200x50 terminal, the recorder and one agent, for an hour.

What runs (each its own process, as an operator would start them):
- `monitor sim --write-config rack.toml`: 18 tray agents and 72 inference servers on loopback.
- `monitor --config rack.toml --store A` in a pseudo-terminal of 200x50 (the live client: scrape, store,
  TUI); this script drains the terminal's output, as a terminal would, and answers nothing.
- `monitor collect --config rack.toml --store B` (the recorder).
- `monitor agent` on simulated tray 1 (tests/cli/sim_nvml_main.py puts a simulated driver in place of
  pynvml; only the driver is simulated), scraped once a second by this script for its text page and for
  the tray Arrow stream, as a Prometheus and our collector would (bench/bench_agent.py: the agent alone).

Every --sample-s seconds (a minute by default) each process's RSS (/proc/PID/status VmRSS) and CPU share
of one core since the last sample are printed as a table row (the issue's columns), with the 1-minute
load average (the machine may be shared: read the figures beside it), and the share of the live client's
GPU rows that were fresh (not STALE) in that minute: on a starved machine most pages miss their tick's
deadline, the client parses only the rest, and its CPU share falls with the work it did. CPU is utime +
stime plus cutime + cstime from /proc/PID/stat: the compaction processes the recorder and the client start
and wait for (storage.compaction_process) count as theirs.

`--b-tree PATH` and/or `--b-env VAR=VALUE` add a second live client and recorder ("B") against the same
sim, from another checkout (e.g. the base commit in a `git worktree`) and/or with extra environment: before
and after side by side in one run, on the same machine state (compare these, not runs apart).

`--views` instead measures, in this process and without the servers, what the live client's head and
view builders cost per tick on the simulated rack's frames (fast frame path, 1 Hz): the head's Arrow
bytes after 600 ticks and per old tick, and the CPU of one tick's rack + serving snapshot.

Run: .venv/bin/python bench/bench_soak.py [--minutes 60] [--quick]   (--quick: 3 minutes)
     .venv/bin/python bench/bench_soak.py --quick --no-agent --b-tree /tmp/base   (A: this tree, B: /tmp/base)
     .venv/bin/python bench/bench_soak.py --views
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's modules, imported where used (the driver stays lean)
MONITOR = [sys.executable, "-c", "from monitor.cli import main; main()"]
COLUMNS, ROWS = 200, 50
QUICK_MINUTES = 3.0
TICK_S = os.sysconf("SC_CLK_TCK")
LABELS = {
    "client": "live client",
    "recorder": "recorder",
    "client_b": "B live client",
    "recorder_b": "B recorder",
    "agent": "agent",
}


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime + stime, cutime + cstime) of `pid` in seconds (fields 14-17 of /proc/PID/stat): its own CPU,
    and that of the children it waited for (its compaction processes)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = [int(f) for f in text[text.rindex(")") + 2 :].split()[11:15]]
    return (fields[0] + fields[1]) / TICK_S, (fields[2] + fields[3]) / TICK_S


def cpu_seconds(pid: int) -> float:
    """`pid`'s own CPU seconds and its waited-for children's, together (cpu_split)."""
    return sum(cpu_split(pid))


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident set size of `pid` in MB (10^6 bytes), from /proc/PID/status (`field` "VmHWM": its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def in_terminal(
    argv: list[str], env: dict[str, str], cwd: Path = ROOT
) -> tuple[subprocess.Popen[bytes], threading.Thread]:
    """Start `argv` on a new pseudo-terminal of COLUMNS x ROWS; a thread reads (and drops) what it draws."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, start_new_session=True
    )
    os.close(slave)

    def drain() -> None:
        while True:
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return proc, reader


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """Wait until `path` exists (the sim wrote its config), failing if `proc` died first."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the sim did not write {path} (exit {proc.poll()})")
        time.sleep(0.5)


PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
"""What a Prometheus scrape asks (its scrape.go: acceptHeader for the text formats, gzip on)."""


def scrape_both(url: str, timeout_s: float = 5.0) -> None:
    """One text scrape (as a Prometheus: gzipped) and one Arrow scrape (as our collector asks a tray's
    agent: collectors.scrape_http.TRAY_ACCEPT) of the agent at `url`."""
    from collectors.scrape_http import SCRAPE_HEADERS, TRAY_ACCEPT

    for headers in (PROMETHEUS_HEADERS, {**SCRAPE_HEADERS, "Accept": TRAY_ACCEPT}):
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            answer.read()


def scrape_forever(url: str, stop: threading.Event) -> None:
    """scrape_both once a second until `stop` (the agent's work is answering scrapes)."""
    while not stop.wait(1.0):
        with contextlib.suppress(OSError):  # a missed scrape is the agent's to show in its CPU, not ours
            scrape_both(url)


def free_port() -> int:
    """A TCP port free on loopback now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    """Start everything, sample every --sample-s seconds for --minutes, print the table, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="How long to run (default 60).")
    parser.add_argument("--quick", action="store_true", help=f"Run {QUICK_MINUTES:g} minutes.")
    parser.add_argument("--sample-s", type=float, default=60.0, help="Seconds between samples.")
    parser.add_argument("--no-agent", action="store_true", help="Leave the agent out.")
    parser.add_argument("--views", action="store_true", help="Measure the head and view builders only.")
    parser.add_argument("--b-tree", type=Path, help="Also run a client and recorder from this checkout.")
    parser.add_argument(
        "--b-env", action="append", default=[], help="VAR=VALUE for the B client and recorder (repeatable)."
    )
    args = parser.parse_args()
    if args.views:
        views()
        return
    minutes = QUICK_MINUTES if args.quick else args.minutes
    # A SIGTERM (timeout, a CI limit) must still stop the children: the finally below does it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
    env["PYTHONPATH"] = str(ROOT)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        config = work / "rack.toml"
        log = (work / "log.txt").open("wb")
        try:
            procs["sim"] = subprocess.Popen(
                [*MONITOR, "sim", "--write-config", str(config)], stdout=log, stderr=log, env=env, cwd=ROOT
            )
            wait_for_file(config, procs["sim"])
            time.sleep(2.0)  # the config is written as the servers start listening

            def start_pair(suffix: str, pair_env: dict[str, str], cwd: Path) -> None:
                """A live client in a terminal and a recorder, each on its own store of the rack."""
                client = [*MONITOR, "--config", str(config), "--store", str(work / f"A{suffix}")]
                procs[f"client{suffix}"], _ = in_terminal(client, pair_env, cwd=cwd)
                procs[f"recorder{suffix}"] = subprocess.Popen(
                    [*MONITOR, "collect", "--config", str(config), "--store", str(work / f"B{suffix}")],
                    stdout=log,
                    stderr=log,
                    env=pair_env,
                    cwd=cwd,
                )

            start_pair("", env, ROOT)
            if args.b_tree or args.b_env:
                b_root = (args.b_tree or ROOT).resolve()
                b_env = {**env, "PYTHONPATH": str(b_root), **dict(kv.split("=", 1) for kv in args.b_env)}
                start_pair("_b", b_env, b_root)
            if not args.no_agent:
                port = free_port()
                agent_env = {**env, "SIM_NVML_HOST": "tray:1"}
                procs["agent"] = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.cli.sim_nvml_main",
                        "agent",
                        "--listen",
                        f"127.0.0.1:{port}",
                    ],
                    stdout=log,
                    stderr=log,
                    env=agent_env,
                    cwd=ROOT,
                )
                url = f"http://127.0.0.1:{port}/metrics"
                threading.Thread(target=scrape_forever, args=(url, stop), daemon=True).start()
            sample(procs, minutes, args.sample_s, work / "A")
        finally:
            stop.set()
            for proc in reversed(list(procs.values())):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()


def sample(procs: dict[str, subprocess.Popen[bytes]], minutes: float, every_s: float, store: Path) -> None:
    """Print a row every `every_s` seconds for `minutes`: RSS and CPU of each process but the sim, and
    the share of the live client's GPU rows (store A) that were fresh, not STALE, in the rows' span."""
    watched = [name for name in LABELS if name in procs]
    header = ["minute", *(f"{LABELS[n]} {what}" for n in watched for what in ("RSS MB", "CPU %"))]
    header += ["client fresh %", "load1"]
    print("| " + " | ".join(header) + " |", flush=True)
    print("|" + "---|" * len(header), flush=True)
    began = time.monotonic()
    last = {n: (began, cpu_seconds(procs[n].pid)) for n in watched}
    end = began + minutes * 60
    seen_ms = 0
    while time.monotonic() < end:
        time.sleep(max(0.0, min(every_s, end - time.monotonic())))
        now = time.monotonic()
        cells = []
        for name in watched:
            proc = procs[name]
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited ({proc.returncode}) after {(now - began) / 60:.1f} min")
            used = cpu_seconds(proc.pid)
            then, before = last[name]
            cells += [f"{rss_mb(proc.pid):.0f}", f"{100 * (used - before) / (now - then):.1f}"]
            last[name] = (now, used)
        fresh, seen_ms = fresh_share(store, seen_ms)
        row = [f"{(now - began) / 60:.1f}", *cells, fresh, f"{os.getloadavg()[0]:.2f}"]
        print("| " + " | ".join(row) + " |", flush=True)


def fresh_share(store: Path, after_ms: int) -> tuple[str, int]:
    """The share of the sealed GPU rows after `after_ms` that are not STALE, and the newest row's time.

    A page that misses its tick's deadline (a loaded machine: the sim or the client starved) leaves a
    STALE stand-in row and no parsing, so a client's CPU share means little without this beside it.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from storage.schemas import GpuState

    tables = []
    for path in (store / "gpu").rglob("*.parquet"):
        try:
            tables.append(pq.read_table(path, columns=["ts", "state"]))
        except OSError:  # merged away by compaction while we looked; its rows are in the new part
            continue
    if not tables:
        return "-", after_ms
    rows = pa.concat_tables(tables)
    ts = rows.column("ts").cast(pa.int64())
    rows = rows.filter(pc.greater(ts, after_ms))
    if not rows.num_rows:
        return "-", after_ms
    stale = pc.sum(pc.equal(rows.column("state"), int(GpuState.STALE))).as_py() or 0
    newest = pc.max(rows.column("ts").cast(pa.int64())).as_py()
    return f"{100 * (1 - stale / rows.num_rows):.0f}", newest


def views(ticks: int = 600, timed: int = 100) -> None:
    """Head bytes and per-tick build CPU over `ticks` sim frames (the last `timed` builds timed)."""
    from collectors.clock import SimClock
    from collectors.sim import SimRack
    from collectors.sim.frames import SimRackFrames
    from monitor.view.builder import SnapshotBuilder
    from monitor.view.serving import ServingBuilder
    from storage.head import Head, arrow_bytes

    try:
        from storage.head import thinning_head as new_head
    except ImportError:  # code from before issue 18
        new_head = Head

    clock = SimClock(1.78e9)
    source = SimRackFrames(SimRack(7, "steady", clock, start=1.78e9))
    head, rack, serving = new_head(), SnapshotBuilder(), ServingBuilder()
    whole = cpu = 0.0
    for i in range(ticks):
        clock.advance(1.0)
        frame = source.poll(round(clock.now() * 1000))
        whole += arrow_bytes([frame])
        head.append(frame)
        if i < ticks - timed - 125:
            continue  # the builders start 125 ticks before the timed ones: their caches are warm
        window = head.latest(rack.frames_needed())
        began = time.process_time()
        serving.build(window, rack.build(window))
        if i >= ticks - timed:
            cpu += time.process_time() - began
    held_frames = head.frames()
    print(f"load1 {os.getloadavg()[0]:.2f}")
    held = arrow_bytes(held_frames)
    print(f"head after {ticks} ticks: {held / 1e6:.1f} MB (whole frames: {whole / 1e6:.1f} MB)")
    # What the oldest frame adds to the head (buffers it shares with its neighbours are not its cost).
    old = (held - arrow_bytes(held_frames[1:])) / 1e3
    print(f"one more tick of history (the oldest frame's own bytes): {old:.1f} KB; a whole frame ", end="")
    print(f"{arrow_bytes([frame]) / 1e3:.1f} KB")
    print(f"rack + serving snapshot, CPU per tick: {1000 * cpu / timed:.1f} ms (mean of {timed})")


if __name__ == "__main__":
    main()
