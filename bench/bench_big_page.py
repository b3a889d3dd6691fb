"""One 9.5 MB page beside the simulated rack's 89 other endpoints: which data lands, and the scraper's RSS.

The rack's 90 servers run in a child process (as in bench_scrape.py), the big page served there in place
of tray 3, so the RSS figures are the scraping side's alone; this process runs the real Poller over a
ScrapeSource at 1 Hz. `--page bad` ends the page with a line that is not the text format (it fails near
its end); `--page valid` is the same page without it; `--page filler` is a valid page of lines the tray
mapping does not read; `--page none` leaves tray 3 alone (the baseline).
Prints ticks in which all 89 other endpoints landed, tray 3's last state and reason, and RSS before the
first tick, at its peak (sampled every 20 ms) and at the end. Uses only ScrapeSource's and Poller's
constructors, so it runs unchanged against older code.
Run: .venv/bin/python bench/bench_big_page.py --page bad [--ticks 40]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing as mp
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import psutil
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.config import parse_config, render_config
from collectors.mappings import frame_to_agent_page
from collectors.poller import Poller
from collectors.scrape import ScrapeSource
from storage.frame import Frame
from storage.head import Head
from storage.schemas import EndpointState, GpuState
from tests.scrape.pagegen import agent_gpus, tray_frame

TRAY = 3


def big_page(mib: float, kind: str) -> bytes:
    """Tray 3's agent page, then lines up to `mib` MiB: `bad` and `valid` add one GPU family the mapper
    reads, with escaped labels (the parser's slowest lines), `bad` ending in a line that is not the text
    format; `filler` adds a family the mapper does not read (the parser skips its lines unparsed)."""
    gpus = agent_gpus(TRAY)
    head = frame_to_agent_page(tray_frame(TRAY, 1), gpus, hostname="tray03")
    lines, size, i = [head], len(head), 0
    while size < mib * (1 << 20):
        gpu = gpus[i % 4]
        if kind == "filler":
            line = f'exporter_extra_info{{gpu="{gpu.index}",shard="{i:09d}",kind="unread"}} 1\n'
        else:
            line = (
                f'DCGM_FI_DEV_GPU_TEMP{{gpu="{gpu.index}",UUID="{gpu.uuid}",err="a\\\\b\\"c\\nd {i}"}} 41\n'
            )
        lines.append(line)
        size += len(line)
        i += 1
    if kind == "bad":
        lines.append("this is { not a sample\n")
    return "".join(lines).encode()


def serve(conn: Connection, page: str, mib: float) -> None:
    """Child process: the simulated rack, with tray 3 replaced by the big page, until told to stop."""
    from collectors.clock import SimClock
    from collectors.sim import SimRack
    from collectors.sim.http import SimServers

    rack = SimRack(seed=0, clock=SimClock(start=time.time(), speed=1.0), engines=("vllm",))
    with SimServers(rack) as servers:
        assert servers.config is not None
        trays = list(servers.config.trays)
        if page != "none":
            url = serve_page(big_page(mib, page))
            trays[TRAY - 1] = dataclasses.replace(trays[TRAY - 1], url=url)
        conn.send(render_config(dataclasses.replace(servers.config, trays=tuple(trays))))
        conn.recv()


def serve_page(body: bytes) -> str:
    """Serve `body` on 127.0.0.1 from a daemon thread; returns its URL."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start() -> str:
        app = web.Application()

        async def page(_request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="text/plain")

        app.router.add_get("/metrics", page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"

    return asyncio.run_coroutine_threadsafe(start(), loop).result(30)


class PeakRss:
    """The process's RSS, sampled every 20 ms in a daemon thread; `peak` in bytes."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        return self.peak


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--page", choices=("bad", "valid", "filler", "none"), default="bad")
    parser.add_argument("--mib", type=float, default=9.5, help="the big page's size")
    parser.add_argument("--ticks", type=int, default=40)
    args = parser.parse_args()
    ours, theirs = mp.Pipe()
    child = mp.get_context("spawn").Process(target=serve, args=(theirs, args.page, args.mib), daemon=True)
    child.start()
    try:
        config = parse_config(ours.recv(), "sim")
        trays = list(config.trays)
        source = ScrapeSource(trays, config.servers, name=config.name)  # the default timeout, 2 s
        good_gpus = {4 * (t.tray - 1) + g for t in trays if t.tray != TRAY for g in range(4)}
        servers = {s.name for s in config.servers}
        frames: list[Frame] = []
        rss = PeakRss()
        before = rss.peak
        poller = Poller([source], Head(), interval=1.0, sinks=[frames.append])
        poller.start()
        while len(frames) < args.ticks:
            time.sleep(0.2)
        poller.sources = []
        poller.stop()
        peak, after = rss.stop(), psutil.Process().memory_info().rss
        status = source.statuses()[TRAY - 1]
        source.close()
    finally:
        ours.send("stop")
        child.join(timeout=10)
    missed = [n for n, f in enumerate(frames[: args.ticks]) if not _all_landed(f, good_gpus, servers)]
    landed = args.ticks - len(missed)
    print(f"page: {args.page} ({args.mib:g} MiB) on tray {TRAY}, {args.ticks} ticks at 1 Hz")
    print(f"ticks in which all 89 other endpoints landed: {landed} of {args.ticks}", end="")
    print(f" (not in ticks {', '.join(map(str, missed))})" if missed else "")
    print(f"tray {TRAY}: {EndpointState(status.state).name} {status.reason}")
    mib = 1 << 20
    print(f"RSS: {before / mib:.0f} MiB before, peak {peak / mib:.0f} MiB, {after / mib:.0f} MiB at the end")


def _all_landed(frame: Frame, good_gpus: set[int], servers: set[str]) -> bool:
    ok = {r["gpu"] for r in frame.table("gpu").to_pylist() if r["state"] == GpuState.OK}
    serving = frame.table("serving").to_pylist()
    return good_gpus <= ok and {r["endpoint"] for r in serving if r["state"] == EndpointState.OK} == servers


if __name__ == "__main__":
    main()
