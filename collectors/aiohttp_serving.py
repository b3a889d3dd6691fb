"""aiohttp glue for the simulator's servers: the agent's answers as aiohttp handlers, within the guard.

The simulator serves 18 trays and 72 inference servers from one aiohttp application per listener
(collectors.sim.http, fleet_http); `monitor agent` does not load aiohttp (12 MiB resident) and serves
its two paths with collectors.agent_http. Both give the answers of collectors.agent_server.agent_answer,
and both sit behind collectors.http_guard's connection limits.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

from collectors.agent_server import CONTENT_TYPE, AgentPage, PageFn, agent_answer, failure_text
from collectors.http_guard import REQUEST_LOG, ConnectionGuard, ServerLimits, serve_guarded

Handler = Callable[[web.Request], Awaitable[web.Response]]


def page_response(request: web.Request, body: bytes) -> web.Response:
    """A text-format response, gzipped when the scraper accepts it."""
    response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression(web.ContentCoding.gzip)
    return response


def metrics_handler(render: PageFn) -> Handler:
    """An aiohttp handler serving `render()`'s page; the render runs in a worker thread."""

    async def handle(request: web.Request) -> web.Response:
        try:
            body = await asyncio.get_running_loop().run_in_executor(None, render)
        except Exception as err:  # a failed poll is this scrape's 500, not the server's end
            return web.Response(status=500, text=failure_text(err))
        return page_response(request, body)

    return handle


def agent_handler(page: AgentPage) -> Handler:
    """The agent's /metrics handler (collectors.agent_server.agent_answer), the poll in a worker thread."""

    async def handle(request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        encoding = request.headers.get("Accept-Encoding", "")
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, agent_answer, page, accept, encoding)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    return handle


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP."""
    return web.Response(text="ok\n")


def agent_app(page: AgentPage) -> web.Application:
    """The agent's answers as an aiohttp application: GET /metrics and GET /healthz."""
    app = web.Application()
    app.router.add_get("/metrics", agent_handler(page))
    app.router.add_get("/healthz", healthz)
    return app


def guarded_runner(
    app: web.Application, limits: ServerLimits | None = None
) -> tuple[web.AppRunner, ConnectionGuard]:
    """An AppRunner for `app` with the request limits, and the guard its sockets are served through."""
    guard = ConnectionGuard(limits)
    app.middlewares.append(_middleware(guard))
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        max_line_size=guard.limits.max_line_size,
        max_field_size=guard.limits.max_field_size,
        # A request with a body it did not read is not drained (10 s by default): closed instead.
        lingering_time=0,
        logger=REQUEST_LOG,
    )
    return runner, guard


def _middleware(guard: ConnectionGuard) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def mark_busy(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Mark the connection busy for the request; refuse a request with a body."""
        conn = guard.connection_of(request.transport)
        if conn is not None:
            guard.request_started(conn)
        try:
            if request.body_exists:
                raise web.HTTPRequestEntityTooLarge(max_size=0, actual_size=request.content_length or 0)
            return await handler(request)
        finally:
            if conn is not None:
                guard.request_done(conn)

    return mark_busy


async def serve_socket(runner: web.AppRunner, guard: ConnectionGuard, sock: socket.socket) -> asyncio.Server:
    """Serve a bound listening socket through the guard (after `await runner.setup()`).

    Raises:
        OSError: the open-file limit leaves no room for connections.
    """
    server = runner.server
    assert server is not None, "serve_socket needs a runner that was set up"
    return await serve_guarded(guard, server, sock)
