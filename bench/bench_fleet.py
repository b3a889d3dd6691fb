"""Benchmark the fleet screen following N simulated racks at 1 Hz: CPU by part, work per tick, fault -> red.

`--source vm` (the default; the issue's benchmark): the racks are `monitor sim --racks N` (collectors.sim.
fleet_http: one loopback port, each rack's pages under /rackNN/) in a child process, scraped at 1 Hz by
VictoriaMetrics itself (-promscrape.config, bench/fleet_vm.py), and the fleet screen reads every rack's row
with the fleet's aggregate queries (monitor.fleet.QueriedFleet: 10 queries a tick for the whole fleet). The
table adds queries per tick, the slowest query's answer time, our CPU per round, VictoriaMetrics' CPU and
scrape counters and the rows at the end. `--source http`: the same racks scraped by this process as
`monitor --config fleet.toml` does without a backend (90 HTTP requests per rack per tick, each rack's row
built from its frames: the "before"). `--source frames`: each rack a SimRack read through its fast frame
path in this process (no HTTP). Either way the figures split this process's CPU into the event loop
(Textual, headless at 200x50), the rows (the fleet worker, or the query thread) and the rest. A gpu-lost
fault starts on one rack at a known wall time; the figure is the time from then until that rack's row is
red with the lost GPU as its worst problem, built and drawn. The simulator needs ~0.2-0.4 s of CPU per
rack per second: 16 racks need 4+ free cores for it alone (on a starved machine the table shows failed
scrapes and silent trays).

    .venv/bin/python bench/bench_fleet.py [--racks 16] [--seconds 60] [--fault-at 40] [--source vm|http]
    .venv/bin/python bench/bench_fleet.py --row-cost
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import threading
import time
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_vm import (
    QueryMeter,
    peer_servers,
    port_of,
    proc_cpu_s,
    queried_row_bytes,
    query_lines,
    rows_text,
    scrape_config,
    vm_scrapes,
)

SIZE = (200, 50)


def serve(racks: int, fault_rack: int, fault_at: float, conn: Connection) -> None:
    """The child: serve the racks, send (fleet config, fault wall time), serve until the pipe closes."""
    from monitor.commands.fleet_sim import rack_name, start_fleet

    sim = start_fleet(
        racks, "127.0.0.1", engine="vllm", scenario=f"gpu-lost@{rack_name(fault_rack)}", seed=1, speed=1.0,
        fault_at=fault_at,
    )  # fmt: skip
    fault = sim.servers.racks[rack_name(fault_rack)].rack.scenario.fault
    conn.send((sim.fleet.racks, sim.fault_wall_s, fault.gpu))
    with contextlib.suppress(EOFError):
        conn.recv()
    sim.stop()


def thread_cpu_s(ident: int) -> float:
    """CPU seconds of one thread of this process."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, ProcessLookupError):
        return 0.0


class Meter:
    """Row-building CPU (in the worker's own thread), and when the fault shows: its row built, then drawn."""

    def __init__(self, app, fault_name: str, fault_label: str) -> None:
        self.row_cpu_s = 0.0
        self.rows_built = 0
        self.built_at: float | None = None
        self.shown_at: float | None = None
        self.red_before_s = 0
        """Row sets drawn with the fault's rack red before its fault (silent trays on a starved machine)."""
        self.red_before_why: set[str] = set()
        self.backend_data = False
        self.before_data = 0
        """Row sets drawn before the fault rack had any GPU from the backend (its cold start)."""
        """The worst problems those red rows named."""
        self.fault_name = fault_name
        self.fault_label = fault_label
        for rack in app.fleet.racks:
            self._wrap_rack(rack)
        self._wrap_screen(app.fleet_screen)

    def shows_fault(self, row) -> bool:
        """The row is red and its worst problem is the fault's lost GPU."""
        worst = row.worst
        return row.health.name == "CRITICAL" and worst is not None and worst.place == self.fault_label

    def _wrap_rack(self, rack) -> None:
        build = rack.current_row

        def timed():
            seen = rack.seen
            t0 = time.thread_time()
            row = build()
            self.row_cpu_s += time.thread_time() - t0
            self.rows_built += rack.seen != seen
            if rack.name == self.fault_name and self.built_at is None and self.shows_fault(row):
                self.built_at = time.time()
            return row

        rack.current_row = timed

    def _wrap_screen(self, screen) -> None:
        show = screen.show

        def shown(rows):
            show(rows)
            row = screen.rows[self.fault_name]
            self.backend_data = self.backend_data or row.gpus_ok > 0
            if self.shown_at is not None:
                return
            if self.shows_fault(row):
                self.shown_at = time.time()
            elif not self.backend_data:
                self.before_data += 1  # the backend's first scrapes of the rack have not landed
            elif row.health.name == "CRITICAL":
                self.red_before_s += 1
                if row.worst is not None:
                    self.red_before_why.add(f"{row.worst.what} {row.worst.place}")

        screen.show = shown


def frames_fleet(racks: int, fault_rack: int, fault_at: float):
    """--source frames: each rack a SimRack read through its fast frame path in this process, on the wall
    clock (no HTTP: what a source that hands the fleet finished frames costs the screen)."""
    from collectors.clock import SimClock
    from collectors.config import RackConfig
    from collectors.sim import SimRack
    from collectors.sim.frames import SimRackFrames
    from monitor.commands.fleet_sim import rack_name, rack_scenarios
    from monitor.fleet import Fleet

    start = time.time()
    clock = SimClock(start=start, speed=1.0)
    scenarios = rack_scenarios(f"gpu-lost@{rack_name(fault_rack)}", racks)
    sims = {
        rack_name(k): SimRack(seed=k, scenario=s, clock=clock, fault_at=fault_at)
        for k, s in enumerate(scenarios, start=1)
    }
    fleet = Fleet(
        [RackConfig(name=n) for n in sims],
        lambda c, _every: [SimRackFrames(sims[c.name])],
        interval=1.0,
        clock=clock,
    )
    fault = sims[rack_name(fault_rack)].scenario.fault
    return fleet, start + fault_at, fault.gpu, None, None


def spawn_racks(racks: int, fault_rack: int, fault_at: float):
    """Serve the racks from a child process (`serve`); returns its configs, the fault's wall time and GPU,
    and a call that stops it. A child that dies before answering ends the bench (EOFError), not a hang."""
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=serve, args=(racks, fault_rack, fault_at, child), daemon=True
    )
    proc.start()
    child.close()  # the child holds the only other end now
    configs, fault_wall_s, fault_gpu = parent.recv()

    def stop() -> None:
        parent.send("stop")
        proc.join(timeout=30)

    return configs, fault_wall_s, fault_gpu, stop


def http_fleet(racks: int, fault_rack: int, fault_at: float):
    """--source http: the racks served by a child process, scraped over loopback as `monitor --config`."""
    from monitor.commands.root import scrape_source
    from monitor.fleet import Fleet

    configs, fault_wall_s, fault_gpu, stop_sim = spawn_racks(racks, fault_rack, fault_at)
    fleet = Fleet(configs, lambda c, every: [scrape_source(c, every)], interval=1.0)
    return fleet, fault_wall_s, fault_gpu, stop_sim, None


def vm_fleet(racks: int, fault_rack: int, fault_at: float):
    """--source vm: the racks served by a child process, scraped at 1 Hz by VictoriaMetrics itself
    (-promscrape.config), and read back by the fleet's aggregate queries (monitor.fleet.QueriedFleet)."""
    import dataclasses
    import tempfile

    from collectors.config_promql import PromqlConfig
    from monitor.commands.root import scrape_source
    from monitor.fleet import make_fleet

    servers = peer_servers()
    configs, fault_wall_s, fault_gpu, stop_sim = spawn_racks(racks, fault_rack, fault_at)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-vm-"))
    scrape_config(configs, tmp / "scrape.json")
    port = servers.free_port()
    argv = [
        "victoria-metrics",
        f"-httpListenAddr={servers.HOST}:{port}",
        f"-storageDataPath={tmp / 'vm'}",
        "-search.latencyOffset=0s",  # the newest samples are what the rows are about
        f"-promscrape.config={tmp / 'scrape.json'}",
        "-promscrape.suppressScrapeErrors",
    ]
    vm = servers.Server("victoria-metrics", argv, port, "/health", tmp / "vm.log").__enter__()
    url = f"http://{servers.HOST}:{port}"
    promql = [
        dataclasses.replace(
            c, promql=PromqlConfig(url, (("rack", c.name),), lookback_s=3.0, server_label="server")
        )
        for c in configs
    ]
    fleet = make_fleet(promql, lambda c, every: [scrape_source(c, every)], interval=1.0)

    def stop() -> None:
        try:
            vm.__exit__(None, None, None)
            stop_sim()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # VictoriaMetrics' data: 7-23 MB a run

    return fleet, fault_wall_s, fault_gpu, stop, vm.pid


async def run(racks: int, seconds: float, fault_rack: int, fault_at: float, source: str) -> None:
    from collectors.rack import gpu_label
    from monitor.commands.fleet_sim import rack_name
    from monitor.tui.fleet_app import FleetApp

    make = {"http": http_fleet, "frames": frames_fleet, "vm": vm_fleet}[source]
    fleet, fault_wall_s, fault_gpu, stop_sim, vm_pid = make(racks, fault_rack, fault_at)
    app = FleetApp(fleet, fleet_name="bench fleet", title="bench fleet")
    meter = Meter(app, rack_name(fault_rack), gpu_label(fault_gpu))
    queries = QueryMeter(fleet) if source == "vm" else None
    load0 = os.getloadavg()
    fleet.start()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(5.0)  # warm up: the first frames, the first rows
            main = threading.main_thread().ident
            rounds0 = len(queries.rounds) if queries else 0
            vm0 = proc_cpu_s(vm_pid) if vm_pid else 0.0
            cpu0, wall0, main0 = time.process_time(), time.monotonic(), thread_cpu_s(main)
            rows0, applied0, built0, versions0 = (
                meter.row_cpu_s,
                app.rows_applied,
                meter.rows_built,
                _frames(fleet),
            )
            await pilot.pause(seconds)
            cpu1, wall1, main1 = time.process_time(), time.monotonic(), thread_cpu_s(main)
            vm1 = proc_cpu_s(vm_pid) if vm_pid else 0.0
            frames = _frames(fleet) - versions0
            rows_cpu = meter.row_cpu_s - rows0
            built = meter.rows_built - built0
            applied = app.rows_applied - applied0
            order = app.fleet_screen.sorted_names()
            rounds = queries.rounds[rounds0:] if queries else []
            final = [r.current_row() for r in fleet.racks]
            scrapes = vm_scrapes(vm_pid, port_of(fleet)) if vm_pid else ""
            head_bytes = [
                sum(b.nbytes for f in r.head.frames() for b in f.batches.values()) for r in fleet.racks
            ]
    finally:
        fleet.stop()
        if stop_sim is not None:
            stop_sim()
    wall = wall1 - wall0
    total = (cpu1 - cpu0) / wall * 100
    ui = (main1 - main0) / wall * 100
    rows = rows_cpu / wall * 100
    load1 = os.getloadavg()
    if meter.shown_at is not None and meter.built_at is not None:
        red = (
            f"{meter.shown_at - fault_wall_s:.2f} s to drawn ({meter.built_at - fault_wall_s:.2f} s to row "
            f"built; {rack_name(fault_rack)} {gpu_label(fault_gpu)} lost; top row {order[0]}; "
            f"{meter.before_data} row sets before the backend's first data of the rack, then "
            f"{meter.red_before_s} red before the fault"
            + (f": {', '.join(sorted(meter.red_before_why)[:4])})" if meter.red_before_why else ")")
        )
    else:
        red = f"not within the run (fault at +{fault_at:.0f} s)"
    lines = [
        f"fleet of {racks} racks ({racks * 72} GPUs; source {source}) at 1 Hz for {wall:.0f} s, "
        f"headless {SIZE[0]}x{SIZE[1]}; load average {load0[0]:.1f} -> {load1[0]:.1f} "
        f"on {os.cpu_count()} cores",
        f"  TUI process CPU: {total:.1f} % of one core",
        f"    event loop (Textual, table diff): {ui:.1f} %",
    ]
    if source == "vm":
        lines += query_lines(rounds, wall, total - ui, (vm1 - vm0) / wall * 100)
    else:
        polled = "HTTP scrape + mapping" if source == "http" else "the simulator itself"
        lines += [
            f"    fleet worker (rows): {rows:.1f} % "
            f"({rows_cpu / max(built, 1) * 1e3:.1f} ms CPU per rack row)",
            f"    pollers (the sources: {polled}; the rest): {total - ui - rows:.1f} %",
            f"  per tick: {racks * 90 if source == 'http' else 0} HTTP requests; {frames / wall:.1f} rack "
            f"frames/s landed, {built / wall:.1f} rows built/s, {applied / wall:.1f} row sets applied/s",
        ]
    lines.append(f"  fault -> red: {red}")
    lines.append(f"  rows at the end: {rows_text(final)}" + (f"; {scrapes}" if scrapes else ""))
    if source == "vm":
        lines.append(
            f"  per-rack memory: {queried_row_bytes(fleet) / 1e3:.1f} kB (its row and figures; no frames)"
        )
    else:
        builder_bytes = _builder_bytes(fleet.racks[0])  # pollers stopped: tracemalloc is process-wide
        lines.append(
            f"  per-rack memory: small head {statistics.mean(head_bytes) / 1e6:.2f} MB of Arrow "
            f"({len(fleet.racks[0].head.frames())} frames, no serving_hist); "
            f"row builders {builder_bytes / 1e6:.2f} MB"
        )
    print("\n".join(lines))


def _frames(fleet) -> int:
    return sum(r.head.version for r in fleet.racks)


def _builder_bytes(rack) -> int:
    """Python memory a rack's row builders keep after building a row from its small head (tracemalloc)."""
    from monitor.fleet import FleetRack

    fresh = FleetRack(rack.config, rack.head, rack.poller)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fresh.current_row()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return kept


def row_cost(frames_n: int = 30) -> None:
    """--row-cost: CPU of one rack's row per new frame, alone (no pollers, no app), simulator frames."""
    from collectors.clock import SimClock
    from collectors.config import RackConfig
    from collectors.sim import SimRack
    from collectors.sim.frames import SimRackFrames
    from monitor.fleet import ROW_FRAMES, FleetRack, RackHead

    start = 1_780_000_000.0
    source = SimRackFrames(SimRack(seed=1, clock=SimClock(start=start), start=start))
    frames = [source.poll(round((start + t) * 1000)) for t in range(1, ROW_FRAMES + frames_n + 3)]
    head = RackHead()
    rack = FleetRack(RackConfig(name="r"), head, None)  # type: ignore[arg-type]
    for frame in frames[: ROW_FRAMES + 2]:  # fill the window first
        head.append(frame)
        rack.current_row()
    t0 = time.thread_time()
    for frame in frames[ROW_FRAMES + 2 :]:
        head.append(frame)
        rack.current_row()
    per_row = (time.thread_time() - t0) / frames_n
    load = os.getloadavg()[0]
    print(
        f"one rack row per new frame: {per_row * 1e3:.1f} ms CPU ({frames_n} frames; load average {load:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--racks", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fault-rack", type=int, help="default: rack 7, or the last of a smaller fleet")
    parser.add_argument("--fault-at", type=float, default=30.0, help="seconds after the sim starts")
    parser.add_argument("--source", choices=("vm", "http", "frames"), default="vm")
    parser.add_argument("--row-cost", action="store_true", help="only the CPU of one rack's row, alone")
    args = parser.parse_args()
    if args.row_cost:
        row_cost()
        return
    fault_rack = args.fault_rack if args.fault_rack is not None else min(7, args.racks)
    asyncio.run(run(args.racks, args.seconds, fault_rack, args.fault_at, args.source))


if __name__ == "__main__":
    main()
