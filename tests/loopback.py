"""A real aiohttp server on 127.0.0.1, run on its own asyncio loop in a thread.

The scrapers under test block their caller (as the poller's thread does), so the pages they read
must be served from a loop other than the caller's. Subclasses add their routes in `routes`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

from aiohttp import web

T = TypeVar("T")


class LoopbackServer:
    """Start with `start()` (or `with`), stop with `stop()`; `url(path)` names a route."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def routes(self, app: web.Application) -> None:
        """Add the server's routes to `app`."""
        raise NotImplementedError

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def url(self, path: str) -> str:
        """The URL of `path` ('metrics' or '/metrics') on this server."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> None:
        """Start the loop thread and listen on a free loopback port."""
        self.thread.start()
        self.run(self._start())

    def stop(self) -> None:
        """Close the server, then its loop and thread."""
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        app = web.Application()
        self.routes(app)
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
