"""A real loopback HTTP server whose pages the test sets between scrapes (any Content-Type)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web


class LivePages:
    """Serves `pages[path] = (body, content_type)` on 127.0.0.1; the test changes them between scrapes."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, str]] = {}
        self.accepts: list[str | None] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path}", self._page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _page(self, request: web.Request) -> web.Response:
        self.accepts.append(request.headers.get("Accept"))
        body, content_type = self.pages[request.match_info["path"]]
        return web.Response(body=body.encode(), headers={"Content-Type": content_type})


@pytest.fixture
def live() -> Iterator[LivePages]:
    """A running LivePages server."""
    server = LivePages()
    server.start()
    try:
        yield server
    finally:
        server.stop()
