"""`monitor agent`'s HTTP/1.1 server: asyncio and h11, behind collectors.http_guard's limits.

An agent runs on every tray and answers two paths to a few scrapers, so it does not load aiohttp (12 MiB
resident; the simulator's 90 servers keep it: collectors.aiohttp_serving). The protocol is h11's
(https://h11.readthedocs.io: HTTP/1.1's state machine, as httpx and uvicorn use it, with no I/O of its
own): framing, keep-alive and pipelining are h11's; this module adds the agent's rules:

- GET and HEAD of /metrics (collectors.agent_server.agent_answer, in a worker thread: it may poll
  NVML) and /healthz; 404 for any other path, 405 for any other method;
- a request line over `max_line_size` or a header field over `max_field_size` bytes: 431 (h11 itself
  answers a head over its 16 KiB bound, or a malformed one, with its status hint), and the connection
  closed; a request with a body: 413, closed without reading it (a scrape sends none);
- one request at a time per connection: bytes of the next one wait until this one is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from http import HTTPStatus

import h11

from collectors.agent_server import AgentPage, Answer, agent_answer
from collectors.http_guard import REQUEST_LOG, ConnectionGuard, ServerLimits, serve_guarded

PATHS = (b"/metrics", b"/healthz")
MAX_HEAD = 16 * 1024
"""h11's bound on a request's head, in bytes (its default): beyond it h11 answers 431."""
SERVER = b"rack-monitor-agent"


class AgentProtocol(asyncio.Protocol):
    """One client connection of the agent."""

    def __init__(self, page: AgentPage, guard: ConnectionGuard) -> None:
        self.page = page
        self.guard = guard
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.transport: asyncio.Transport | None = None
        self.answering: asyncio.Task[None] | None = None
        """The request being answered (kept: the event loop holds only a weak reference to a task)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._next_request()

    def eof_received(self) -> bool:
        self.h11.receive_data(b"")
        self._next_request()
        return True  # keep the transport for an answer under way; closed after it (MUST_CLOSE)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _next_request(self) -> None:
        """Take the next complete request head, unless one is being answered."""
        while not self.answering and self.transport is not None:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as err:
                self._refuse(err.error_status_hint, str(err))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return
            if isinstance(event, h11.Request):
                self.answering = asyncio.get_running_loop().create_task(self._answer(event))
                return

    async def _answer(self, request: h11.Request) -> None:
        """Answer one request (busy in the guard's eyes meanwhile), then take the next one."""
        conn = self.guard.connection_of(self.transport)
        if conn is not None:
            self.guard.request_started(conn)
        try:
            status, why = self._check(request)
            if status:
                self._refuse(status, why)
                return
            # A request without a body ends where its head does: h11 has its EndOfMessage already.
            if not isinstance(self.h11.next_event(), h11.EndOfMessage):
                self._refuse(400, "a request without a body that does not end")
                return
            try:
                answer = await self._route(request)
            except Exception as err:  # the executor gone at shutdown: this request's 500
                self._refuse(500, f"{type(err).__name__}: {err}")
                return
            self._send(answer, head_only=request.method == b"HEAD")
        finally:
            self.answering = None
            if conn is not None:
                self.guard.request_done(conn)
        if self.transport is None or self.transport.is_closing():
            return
        if self.h11.our_state is h11.MUST_CLOSE:
            self.transport.close()
            return
        self.h11.start_next_cycle()
        self._next_request()

    def _check(self, request: h11.Request) -> tuple[int, str]:
        """(status, why) for a request the agent refuses, or (0, '')."""
        limits = self.guard.limits
        if len(request.method) + len(request.target) + len(b"  HTTP/1.1\r\n") > limits.max_line_size:
            return 431, "request line too long"
        if any(len(name) + len(value) + 2 > limits.max_field_size for name, value in request.headers):
            return 431, "header field too long"
        headers = dict(request.headers)  # h11 gives names in lower case
        if b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0":
            return 413, "a scrape sends no body"
        return 0, ""

    async def _route(self, request: h11.Request) -> Answer:
        path = request.target.split(b"?", 1)[0]
        if path not in PATHS:
            return _plain(404, "not found: /metrics or /healthz\n")
        if request.method not in (b"GET", b"HEAD"):
            return Answer(405, {"Allow": "GET, HEAD", "Content-Type": "text/plain"}, b"GET or HEAD\n")
        if path == b"/healthz":
            return _plain(200, "ok\n")
        headers = dict(request.headers)
        accept = headers.get(b"accept", b"").decode("latin-1")
        encoding = headers.get(b"accept-encoding", b"").decode("latin-1")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, agent_answer, self.page, accept, encoding)

    def _send(self, answer: Answer, *, head_only: bool = False) -> None:
        """Write `answer` (its headers only for HEAD), unless the connection has closed meanwhile."""
        if self.transport is None or self.transport.is_closing():
            return
        headers = [(b"server", SERVER), *((k.encode(), v.encode()) for k, v in answer.headers.items())]
        headers.append((b"content-length", str(len(answer.body)).encode()))
        reason = HTTPStatus(answer.status).phrase.encode()
        out = self.h11.send(h11.Response(status_code=answer.status, headers=headers, reason=reason))
        if not head_only:
            out += self.h11.send(h11.Data(data=answer.body))
        out += self.h11.send(h11.EndOfMessage())
        self.transport.write(out)

    def _refuse(self, status: int, why: str) -> None:
        """Answer `status` (when an answer can still be sent) and close the connection."""
        REQUEST_LOG.warning("refused a request with %d: %s", status, why)
        if self.transport is None:
            return
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            answer = _plain(status, f"{why}\n")
            answer.headers["Connection"] = "close"
            with contextlib.suppress(h11.LocalProtocolError):  # h11 cannot answer now: the close says it
                self._send(answer)
        self.transport.close()


def _plain(status: int, text: str) -> Answer:
    return Answer(status, {"Content-Type": "text/plain; charset=utf-8"}, text.encode())


async def serve_agent(
    page: AgentPage, sock: socket.socket, limits: ServerLimits | None = None
) -> tuple[asyncio.Server, ConnectionGuard]:
    """Serve the agent on a bound listening socket, behind a connection guard with `limits`.

    Raises:
        OSError: the open-file limit leaves no room for connections.
    """
    guard = ConnectionGuard(limits)
    factory: Callable[[], asyncio.Protocol] = lambda: AgentProtocol(page, guard)  # noqa: E731
    return await serve_guarded(guard, factory, sock), guard
