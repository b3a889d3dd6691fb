"""Remote-write out: CPU per tick, bytes per sample on the wire, backlog drain rate, and the collector's
CPU per 1 Hz tick with scrape + store + remote-write.

Four figures (targets from issue 15), all against a real VictoriaMetrics 1.79 on loopback:
1. encode + send CPU per tick of one rack's frame, in the live shape (`interval` 5 s: 5 ticks a
   request) and per table (target <= 5 ms a tick);
2. bytes per sample on the wire (snappy-compressed protobuf body / samples), live and backlog shapes;
3. backlog drain rate: simulated seconds of history sent per wall second after an outage (target >=
   10x real time);
4. `monitor collect --config` (18 tray agents + 72 vLLM servers served by `monitor sim` in another
   process) CPU per 1 Hz tick in its steady state (after 40 s), with and without --remote-write
   (target <= 60 ms with it).

    .venv/bin/python bench/bench_remote_write.py [--backlog 300] [--collect 60] [--beside BASE_WORKTREE]

5. with --beside: this checkout's `collect` and another checkout's at the same time against one
   simulator, each process's CPU over the same window (before/after on a shared machine): scrape +
   store, then scrape + store + remote-write (each to its own VictoriaMetrics).

The machine is shared: the 1-minute load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers.servers import victoria_metrics
from collectors.remote_write.sender import RemoteWriteSender
from collectors.remote_write.series import ORDER_BY, SeriesEncoder
from collectors.remote_write.settings import TABLES_SENT, RemoteWriteSettings
from collectors.remote_write.wire import compress
from monitor.backfill import backfill
from storage.reader import StoreReader

ROOT = Path(__file__).resolve().parents[1]
MONITOR = [
    sys.executable,
    "-c",
    "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()",
]


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


class Counting:
    """Wraps a sender's client: bodies and their bytes."""

    def __init__(self, sender: RemoteWriteSender) -> None:
        self.bytes = 0
        self.requests = 0
        inner = sender.client.post

        def post(body: bytes):
            self.bytes += len(body)
            self.requests += 1
            return inner(body)

        sender.client.post = post  # type: ignore[method-assign]


def encode_per_table(store: Path, ticks_per_request: int) -> None:
    """CPU of encoding one request of `ticks_per_request` ticks, per table and in all, per tick and per
    sample, after one untimed request (label templates and the request's shape built, as in a running
    sender); for the whole frame also split into its steps."""
    with StoreReader(store) as reader:
        lo, _hi = reader.time_range()
        hi = lo + (ticks_per_request - 1) * 1000
        tables = {
            t: reader.sql(f"SELECT * FROM {reader.relation(t, lo, hi)} ORDER BY {ORDER_BY[t]}")
            for t in TABLES_SENT
        }
    subsets = {name: (name,) for name in TABLES_SENT}
    subsets["serving_hist"] = ("serving", "serving_hist")  # a histogram row's names need its engine
    subsets["gpu+serving+host"] = ("gpu", "serving", "host")
    subsets["all"] = TABLES_SENT
    for name, names in subsets.items():
        subset = {t: tables[t] for t in names}
        if not any(t.num_rows for t in subset.values()):
            continue
        encoder = SeriesEncoder("bench")
        encoder.encode(subset)
        best = (float("inf"), 0.0, 0.0, 0.0)
        for _ in range(5):
            t0 = time.process_time()
            raw, samples = encoder.encode(subset)  # serialized by protobuf, part by part
            t1 = t2 = time.process_time()
            body = compress(raw)
            t3 = time.process_time()
            if t3 - t0 < sum(best):
                best = (t1 - t0, t3 - t2, 0.0, 0.0)
        total = sum(best)
        print(
            f"  encode+serialize+snappy {name:>16}: {total / ticks_per_request * 1000:6.2f} ms/tick, "
            f"{total / samples * 1e9:5.0f} ns/sample, {samples // ticks_per_request:6d} samples/tick, "
            f"{len(body) / samples:.2f} B/sample ({load()})"
        )
        if name == "all":
            encode, snappy = (step / ticks_per_request * 1000 for step in best[:2])
            print(f"    of which: rows -> serialized protobuf {encode:.2f}, snappy {snappy:.2f} ms/tick")


def send_all(store: Path, url: str, batch_size: int) -> tuple[float, float, int, Counting, int]:
    """Drain the store to `url` after one untimed request (label templates built, batch size learnt):
    (CPU s, wall s, samples, counting, ticks) of the rest."""
    settings = RemoteWriteSettings(url=url, batch_size=batch_size, max_backlog_s=10 * 86_400)
    sender = RemoteWriteSender(store, settings, SeriesEncoder("bench"))
    sender.send_once()
    first = sender.status
    counting = Counting(sender)
    t0, w0 = time.process_time(), time.perf_counter()
    while sender.send_once():
        pass
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    assert sender.status.state == "ok", sender.status
    ticks = (sender.status.sent_through_ms - first.sent_through_ms) // 1000
    return cpu, wall, sender.status.sent_samples - first.sent_samples, counting, ticks


def live_and_backlog(work: Path, backlog_s: int) -> None:
    live, backlog = work / "live", work / "backlog"
    end = int(time.time()) - 5
    backfill(live, 31, end_s=end, seed=2)
    backfill(backlog, backlog_s + 1, end_s=end, seed=2)
    for ticks in (5, 10):
        print(f"1. one rack's frame, encoded {ticks} ticks a request (steady state; best of 5):")
        encode_per_table(live, ticks)
    with victoria_metrics(work / "vm", work / "vm.log") as vm:
        url = f"http://127.0.0.1:{vm.port}/api/v1/write"
        # Live shape: a sender caught up with a 1 Hz recording sends 5 ticks every 5 s (interval).
        cpu, wall, samples, counting, ticks = send_all(live, url, batch_size=5 * 19_800)
        print(
            f"2. live shape (5 ticks a request): read+encode+send {cpu / ticks * 1000:.1f} ms CPU/tick, "
            f"{counting.bytes / samples:.2f} B/sample on the wire, {samples // ticks} samples/tick, "
            f"{counting.requests} requests ({load()})"
        )
        cpu, wall, samples, counting, ticks = send_all(backlog, url, batch_size=200_000)
        print(
            f"3. backlog of {ticks} s after an outage (batch_size 200k): drained in {wall:.1f} s wall = "
            f"{ticks / wall:.1f}x real time; {cpu / ticks * 1000:.1f} ms CPU/tick, so one free core drains "
            f"{ticks / cpu:.1f}x real time; {counting.bytes / samples:.2f} B/sample, "
            f"{counting.requests} requests ({load()})"
        )


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (/proc/PID/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def simulated_rack(config: Path) -> Iterator[None]:
    """`monitor sim` writing its rack config to `config`, serving until the block ends."""
    sim = subprocess.Popen(
        [*MONITOR, "sim", "--write-config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not config.exists():
            if time.monotonic() > deadline or sim.poll() is not None:
                raise SystemExit("monitor sim did not write its config")
            time.sleep(0.2)
        time.sleep(2)
        yield
    finally:
        os.killpg(sim.pid, signal.SIGTERM)
        sim.wait(30)


def collector_cpu(work: Path, seconds: int, warmup_s: int = 40) -> None:
    """CPU of `monitor collect --config` per 1 Hz tick in its steady state, with and without
    --remote-write: the process's CPU over `seconds` of wall time after `warmup_s` (start-up, the first
    requests' label templates and the sender's first backlog are left out)."""
    config = work / "rack.toml"
    with simulated_rack(config), victoria_metrics(work / "vm2", work / "vm2.log") as vm:
        url = f"http://127.0.0.1:{vm.port}/api/v1/write"
        for label, extra in (
            ("scrape + store", []),
            ("scrape + store + remote-write", ["--remote-write", url]),
        ):
            store = work / f"collect-{len(extra)}"
            argv = [*MONITOR, "collect", "--config", str(config), "--store", str(store)]
            duration = f"{warmup_s + seconds + 5}s"
            collect = subprocess.Popen(
                [*argv, "--duration", duration, *extra], cwd=ROOT, stderr=subprocess.PIPE, text=True
            )
            time.sleep(warmup_s)
            cpu0, wall0, load0 = process_cpu_s(collect.pid), time.monotonic(), load()
            time.sleep(seconds)
            cpu1, wall1 = process_cpu_s(collect.pid), time.monotonic()
            _, stderr = collect.communicate()
            if collect.returncode != 0:
                raise SystemExit(stderr)
            sent = [line for line in stderr.splitlines() if "samples sent" in line]
            print(
                f"4. collect --config, {label}: {(cpu1 - cpu0) / (wall1 - wall0) * 1000:.1f} ms CPU per "
                f"1 Hz tick over {wall1 - wall0:.0f} s after {warmup_s} s ({load0} .. {load()}) "
                f"{sent[-1].split(': ', 1)[-1] if sent else ''}"
            )


def collect_beside(work: Path, seconds: int, other: Path, warmup_s: int = 40) -> None:
    """`monitor collect --config` of this checkout and of `other` (a second worktree, e.g. the base commit)
    at the same time against one simulator, scrape + store, then scrape + store + remote-write (each to a
    VictoriaMetrics of its own): the same machine state for both, so their CPU per tick compares even on a
    shared machine where runs one after the other do not."""
    config = work / "rack.toml"
    with simulated_rack(config):
        _beside(work, config, seconds, other, warmup_s, "scrape + store", [])
        with (
            victoria_metrics(work / "vm-a", work / "vm-a.log") as vm_a,
            victoria_metrics(work / "vm-b", work / "vm-b.log") as vm_b,
        ):
            urls = [f"http://127.0.0.1:{vm.port}/api/v1/write" for vm in (vm_a, vm_b)]
            _beside(work, config, seconds, other, warmup_s, "scrape + store + remote-write", urls)


def _beside(
    work: Path, config: Path, seconds: int, other: Path, warmup_s: int, label: str, urls: list[str]
) -> None:
    procs = {}
    for n, root in enumerate((ROOT, other)):
        store = work / f"beside-{n}-{len(urls)}"
        argv = [*MONITOR, "collect", "--config", str(config), "--store", str(store)]
        extra = ["--remote-write", urls[n]] if urls else []
        procs[root] = subprocess.Popen(
            [*argv, "--duration", f"{warmup_s + seconds + 5}s", *extra],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stderr=subprocess.PIPE,
            text=True,
        )
    time.sleep(warmup_s)
    cpu0, wall0, load0 = {r: process_cpu_s(p.pid) for r, p in procs.items()}, time.monotonic(), load()
    time.sleep(seconds)
    cpu1, wall1 = {r: process_cpu_s(p.pid) for r, p in procs.items()}, time.monotonic()
    for root, proc in procs.items():
        _, stderr = proc.communicate(timeout=60)
        sent = [line for line in stderr.splitlines() if "samples sent" in line]
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        print(
            f"5. collect --config, {label}, {root} ({commit}), side by side: "
            f"{(cpu1[root] - cpu0[root]) / (wall1 - wall0) * 1000:.1f} ms CPU per 1 Hz tick over "
            f"{wall1 - wall0:.0f} s after {warmup_s} s ({load0} .. {load()}) "
            f"{sent[-1].split(': ', 1)[-1] if sent else ''}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=300, help="seconds of backlog to drain (0: skip 1-3)")
    parser.add_argument("--collect", type=int, default=60, help="seconds of each collect run (0: skip)")
    parser.add_argument(
        "--beside",
        type=Path,
        help="another checkout (e.g. a worktree of the base commit): run its collect beside this one's (5.)",
    )
    args = parser.parse_args()
    if shutil.which("victoria-metrics") is None:
        raise SystemExit("victoria-metrics is not installed (apt-get install victoria-metrics)")
    work = Path(tempfile.mkdtemp(prefix="bench-rw-"))
    try:
        if args.backlog:
            live_and_backlog(work, args.backlog)
        if args.collect:
            collector_cpu(work, args.collect)
        if args.beside is not None:
            collect_beside(work, args.collect or 60, args.beside.resolve())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
