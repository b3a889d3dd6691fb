"""Several simulated racks behind one loopback HTTP server, each rack's pages under its own path.

`/rack03/tray07/metrics` is rack03's tray 7 agent page (the real agent page over the real NVML
collector over a SimTray, as collectors.sim.http serves it per port); `/rack03/vllm-12/metrics` is one
of its inference servers, in the engine's format and at the engine's path. One socket serves all of
them, so a fleet of 16 racks (1,440 endpoints) needs one port, not 1,440. An instance that stops
answering (the endpoint-down scenario) has its connection dropped: with one shared socket there is no
per-endpoint port to close, so `refuse` here reads as a dropped connection to the scraper.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import TypeVar

from aiohttp import web

from collectors.agent_server import AgentPage
from collectors.aiohttp_serving import agent_handler, guarded_runner, healthz, page_response
from collectors.config import RackConfig, ServerTarget, TrayTarget
from collectors.http_guard import ConnectionGuard, ServerLimits
from collectors.nvml import NvmlCollector
from collectors.rack import COMPUTE_TRAYS
from collectors.sim.http import SimServers
from collectors.sim.pages import PATHS, RENDERERS
from collectors.sim.rack import SimRack
from collectors.sim.workload import Instance

T = TypeVar("T")


class _SimRackPages:
    """One rack's pages: its 18 tray agent pages and its instances by name."""

    def __init__(self, name: str, rack: SimRack) -> None:
        self.name = name
        self.rack = rack
        self.collectors = [
            NvmlCollector(rack.tray_of(t), name=f"{name}-tray{t:02d}") for t in range(1, COMPUTE_TRAYS + 1)
        ]
        self.trays = {
            f"tray{t:02d}": AgentPage(c, clock=rack.clock, hostname=c.name, min_interval_s=0.1)
            for t, c in enumerate(self.collectors, start=1)
        }
        self.instances = {inst.name: inst for inst in rack.workload.instances}

    def render(self, inst: Instance) -> bytes | None:
        """The instance's page, or None when it has stopped answering."""
        with self.rack.lock:
            self.rack.sync()
            if not inst.answering:
                return None
            return RENDERERS[inst.engine](inst).encode()

    def config(self, base: str) -> RackConfig:
        """The rack config pointing at this rack's pages under `base` ('http://127.0.0.1:PORT')."""
        trays = tuple(
            TrayTarget(t, f"{self.name}-tray{t:02d}", f"{base}/{self.name}/tray{t:02d}/metrics")
            for t in range(1, COMPUTE_TRAYS + 1)
        )
        servers = tuple(
            ServerTarget(
                inst.name, f"{base}/{self.name}/{inst.name}{PATHS[inst.engine]}", inst.engine, inst.gpus
            )
            for inst in self.rack.workload.instances
        )
        return RackConfig(name=self.name, trays=trays, servers=servers)


class SimFleetServers(SimServers):
    """Serves several SimRacks on one loopback port until stop(); `configs` point at each rack.

    SimServers' lifecycle is reused as it is (its loop thread, _listen, stop, the context manager); only
    what is served differs: one listener whose paths name the rack and the endpoint.
    """

    def __init__(
        self,
        racks: Sequence[tuple[str, SimRack]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
    ) -> None:
        """Args:
        racks: (name, rack) in fleet order; a name is a path segment, so letters, digits, '-' and '_'.
        host: the address to listen on.
        port: the port (0: a free one).
        limits: connection limits (collectors.http_guard); the default allows one scraper per rack.
        """
        names = [name for name, _ in racks]
        if len(set(names)) != len(names):
            raise ValueError("rack names must differ")
        for name in names:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"rack name {name!r} is not a path segment")
        # SimServers.__init__ builds one rack's tray collectors and ports; the state its lifecycle
        # uses is set here for the fleet's racks instead.
        self.host = host
        self.port = port
        self.racks = {name: _SimRackPages(name, rack) for name, rack in racks}
        # Each rack's scraper opens up to one connection per endpoint: room for all of them at once.
        self.limits = limits or ServerLimits(max_connections=max(1024, 100 * len(self.racks)))
        self._collectors = [c for pages in self.racks.values() for c in pages.collectors]
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.guard: ConnectionGuard | None = None
        self._by_port = {}
        self._watch: asyncio.Task[None] | None = None
        self.configs: tuple[RackConfig, ...] = ()

    def start(self) -> tuple[RackConfig, ...]:  # type: ignore[override]
        """Bind and serve; returns each rack's config, in fleet order.

        Raises:
            OSError: the address cannot be bound.
        """
        shown = self._serve("sim-fleet-http")
        base = f"http://{shown}:{self.port}"
        self.configs = tuple(pages.config(base) for pages in self.racks.values())
        return self.configs

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/{rack}/{endpoint}/{tail:.+}", self._page)
        self._runner, self.guard = guarded_runner(app, self.limits)
        await self._runner.setup()
        self.port = (await self._listen(self.port)).port

    async def _page(self, request: web.Request) -> web.StreamResponse:
        pages = self.racks.get(request.match_info["rack"])
        if pages is None:
            raise web.HTTPNotFound()
        endpoint, tail = request.match_info["endpoint"], "/" + request.match_info["tail"]
        tray = pages.trays.get(endpoint)
        if tray is not None:
            if tail != "/metrics":
                raise web.HTTPNotFound()
            return await agent_handler(tray)(request)  # text, or Arrow to who asks first
        inst = pages.instances.get(endpoint)
        if inst is None or tail != PATHS[inst.engine]:
            raise web.HTTPNotFound()
        page = await asyncio.get_running_loop().run_in_executor(None, pages.render, inst)
        if page is None:  # a dead server: the connection drops (see the module docstring)
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        return page_response(request, page)
