"""A real loopback HTTP server whose pages the test sets between scrapes (any Content-Type)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web

from tests.loopback import LoopbackServer


class LivePages(LoopbackServer):
    """Serves `pages[path] = (body, content_type)` on 127.0.0.1; the test changes them between scrapes."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: dict[str, tuple[str, str]] = {}
        self.accepts: list[str | None] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{path}", self._page)

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
