"""The simulated rack over real HTTP on loopback: 18 tray agents and one inference server per instance.

Each tray agent is the real agent app (collectors.agent_server) over the real NVML collector over a
SimTray; each inference server serves its instance's page in the engine's format (collectors.sim.pages).
Every endpoint has its own listening socket (ports chosen free, or from a base port), all served by one
asyncio loop in a background thread. When an instance stops answering (the endpoint-down scenario) its
server behaves as a dead one: `refuse` closes its socket (connection refused) and drops open
connections; `hang` accepts and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import web

from collectors.agent_server import AgentPage, bind_socket
from collectors.aiohttp_serving import agent_handler, guarded_runner, healthz, page_response, serve_socket
from collectors.config import RackConfig, ServerTarget, TrayTarget
from collectors.http_guard import ConnectionGuard, ServerLimits
from collectors.nvml import NvmlCollector
from collectors.rack import COMPUTE_TRAYS
from collectors.sim.pages import PATHS, RENDERERS
from collectors.sim.rack import SimRack
from collectors.sim.workload import Instance

DownMode = Literal["refuse", "hang"]
T = TypeVar("T")
WATCH_S = 0.2
"""How often the server loop looks for instances that stopped (or resumed) answering."""
HANG_LIMIT_S = 120.0
"""A hung handler gives up after this long, so a scraper that never disconnects cannot pile them up."""


@dataclass
class _Listener:
    """One endpoint's socket and the server accepting on it."""

    port: int
    server: asyncio.Server | None = None
    instance: int | None = None


class SimServers:
    """Serves a SimRack on loopback until stop(); `config` is the rack config that points at it."""

    def __init__(
        self,
        rack: SimRack,
        *,
        host: str = "127.0.0.1",
        base_port: int | None = None,
        down_mode: DownMode = "refuse",
        name: str | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        """Args:
        rack: the simulated rack (its instances' engines pick each server's format).
        host: the address every endpoint listens on.
        base_port: trays on base..base+17, servers from base+18; None picks free ports.
        down_mode: how a stopped instance's server fails: "refuse" or "hang".
        name: the rack's name in the config.
        limits: connection limits shared by all the endpoints (collectors.http_guard).
        """
        for inst in rack.workload.instances:
            if inst.engine not in RENDERERS:
                raise ValueError(
                    f"the simulator cannot serve engine {inst.engine!r} (known: {', '.join(RENDERERS)})"
                )
        self.rack = rack
        self.host = host
        self.base_port = base_port
        self.down_mode = down_mode
        self.name = name or f"sim-seed{rack.seed}"
        self.limits = limits or ServerLimits()
        self._collectors = [
            NvmlCollector(rack.tray_of(t), name=f"sim-tray{t:02d}") for t in range(1, COMPUTE_TRAYS + 1)
        ]
        self._pages = [
            AgentPage(c, clock=rack.clock, hostname=c.name, min_interval_s=0.1) for c in self._collectors
        ]
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.guard: ConnectionGuard | None = None
        self._by_port: dict[int, _Listener] = {}
        self._trays: list[_Listener] = []
        self._servers: list[_Listener] = []
        self._watch: asyncio.Task[None] | None = None
        self.config: RackConfig | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def _serve(self, thread_name: str) -> str:
        """Start the loop thread and bind every listener (stopping all on failure); returns the host as
        it goes into a URL (an IPv6 address in brackets)."""
        self._thread = threading.Thread(target=self._loop.run_forever, name=thread_name, daemon=True)
        self._thread.start()
        try:
            self._run(self._start())
        except BaseException:
            self.stop()
            raise
        return f"[{self.host}]" if ":" in self.host else self.host

    def start(self) -> RackConfig:
        """Bind every endpoint and start serving; returns the rack config pointing at them.

        Raises:
            OSError: a port is taken or the address cannot be bound.
        """
        shown = self._serve("sim-http")
        trays = tuple(
            TrayTarget(t, f"sim-tray{t:02d}", f"http://{shown}:{lst.port}/metrics")
            for t, lst in enumerate(self._trays, start=1)
        )
        servers = tuple(
            ServerTarget(inst.name, f"http://{shown}:{lst.port}{PATHS[inst.engine]}", inst.engine, inst.gpus)
            for inst, lst in zip(self.rack.workload.instances, self._servers, strict=True)
        )
        self.config = RackConfig(name=self.name, trays=trays, servers=servers)
        return self.config

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/prometheus/metrics", self._metrics)
        app.router.add_get("/healthz", healthz)
        self._runner, self.guard = guarded_runner(app, self.limits)
        await self._runner.setup()
        port = self.base_port
        for _ in range(COMPUTE_TRAYS):
            self._trays.append(await self._listen(port))
            port = port + 1 if port is not None else None
        for inst in self.rack.workload.instances:
            listener = await self._listen(port, inst.index)
            self._servers.append(listener)
            port = port + 1 if port is not None else None
        self._watch = asyncio.get_running_loop().create_task(self._watch_instances())

    async def _listen(self, port: int | None, instance: int | None = None) -> _Listener:
        sock = bind_socket(self.host, port or 0)
        bound = sock.getsockname()[1]
        listener = _Listener(bound, instance=instance)
        await self._open(listener, sock)
        self._by_port[bound] = listener
        return listener

    async def _open(self, listener: _Listener, sock: socket.socket) -> None:
        assert self._runner is not None and self.guard is not None
        try:
            listener.server = await serve_socket(self._runner, self.guard, sock)
        except OSError:
            sock.close()
            raise

    def stop(self) -> None:
        """Stop serving, close the tray collectors and the loop thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self._stop(), timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()
        for collector in self._collectors:
            collector.close()
        self._collectors = []

    async def _stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for listener in self._by_port.values():
            if listener.server is not None:
                listener.server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> SimServers:
        """Start on entry."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop on exit."""
        self.stop()

    # -- serving ---------------------------------------------------------------------------------

    def _listener_of(self, request: web.Request) -> _Listener:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        listener = self._by_port.get(sockname[1]) if sockname else None
        if listener is None:
            raise web.HTTPNotFound()
        return listener

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        listener = self._listener_of(request)
        if listener.instance is None:
            tray = self._trays.index(listener)
            return await agent_handler(self._pages[tray])(request)  # text, or Arrow to who asks first
        inst = self.rack.workload.instances[listener.instance]
        if request.path != PATHS[inst.engine]:
            raise web.HTTPNotFound()
        page = await asyncio.get_running_loop().run_in_executor(None, self._render, inst)
        if page is None:
            return await self._dead(request, inst)
        return page_response(request, page)

    def _render(self, inst: Instance) -> bytes | None:
        """The instance's page, or None when it has stopped answering."""
        with self.rack.lock:
            self.rack.sync()
            if not inst.answering:
                return None
            return RENDERERS[inst.engine](inst).encode()

    async def _dead(self, request: web.Request, inst: Instance) -> web.StreamResponse:
        """A dead server's answer: none (hang), or the connection dropped (refuse)."""
        if self.down_mode == "hang":
            waited = 0.0
            while not inst.answering and waited < HANG_LIMIT_S:
                await asyncio.sleep(WATCH_S)
                waited += WATCH_S
            raise web.HTTPServiceUnavailable()
        if request.transport is not None:
            request.transport.close()
        raise web.HTTPServiceUnavailable()

    async def _watch_instances(self) -> None:
        """Close the socket of a stopped instance (connection refused), reopen it if it comes back."""
        while True:
            await asyncio.sleep(WATCH_S)
            if self.down_mode != "refuse":
                continue
            await asyncio.get_running_loop().run_in_executor(None, self._sync)
            for listener in self._servers:
                assert listener.instance is not None
                answering = self.rack.workload.instances[listener.instance].answering
                if not answering and listener.server is not None:
                    listener.server.close()
                    listener.server = None
                elif answering and listener.server is None:
                    await self._open(listener, bind_socket(self.host, listener.port))

    def _sync(self) -> None:
        with self.rack.lock:
            self.rack.sync()

    @property
    def ports(self) -> list[int]:
        """Every bound port: trays first, then servers."""
        return [lst.port for lst in (*self._trays, *self._servers)]
