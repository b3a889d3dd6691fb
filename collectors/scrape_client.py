"""The scrape source's HTTP/1.1 client: one GET per endpoint and tick over kept-alive connections.

Why not aiohttp's ClientSession here (it stays for every other client of the project): a rack's scrape
is ~90 GETs a second of small pages to the same endpoints, and ClientSession's per-request machinery
(URL and header objects, cookie jar, traces, timers, stream reader) cost ~160 us of CPU a request, a
third of the whole scrape's CPU (bench/bench_scrape.py; docs/benchmarks.md, fourth pass). What a
scrape needs is narrow: GET, a few fixed headers, a status, a Content-Type, a body framed by
Content-Length, chunked coding or the connection's end, gzip/deflate, a byte limit, and keep-alive.
That is what this module and collectors.http_answer (the answer's reading) do, on asyncio's
transports (plain or TLS), and nothing else: no redirects, no cookies, no proxies (the session never
had them: allow_redirects=False, trust_env off).

Errors are raised as types fetch_page reads (collectors.scrape_http), so every endpoint fault keeps its
state and reason: a refused or failed connect (ConnectError), a reset or an answer cut short
(ConnectionLost, http_answer.PageCut), a malformed answer (BadAnswer), a page past the limit
(PageTooBig). A connection is reused only after an answer read to its end whose framing says where it
ends; any other end (an error, a timeout cancelling the read) closes it. A kept-alive connection the
server closed while idle is retried once on a new one, as aiohttp does for an idempotent request
(client.py retry_persistent_connection).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import ssl
import warnings
from collections.abc import Mapping
from urllib.parse import SplitResult, unquote, urlsplit

from collectors.http_answer import Answer, BadAnswer, Connection, PageCut, read_answer

log = logging.getLogger(__name__)

DEFAULT_IDLE_PER_ORIGIN = 100
"""Idle connections kept per host and port by default (aiohttp's connector limit was 100 in all):
one per endpoint is the need, and many endpoints may share one origin under different paths."""


def is_loopback(host: str) -> bool:
    """True for a host name or address that names this host's loopback: `localhost`, 127.0.0.0/8, ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConnectError(OSError):
    """The connection could not be opened (refused, unreachable, DNS); `cause` is the OS error."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause.errno, str(cause))
        self.cause = cause


class ConnectionLost(ConnectionError):
    """The connection failed once open (a reset, a socket error) before the answer was whole;
    `answer_started` is set when the answer had begun (collectors.http_answer.read_answer)."""


class ScrapeClient:
    """GETs over kept-alive connections, at most `idle_per_origin` idle ones per host and port.

    Args:
        headers: sent with every request (Accept, Accept-Encoding, User-Agent); a request's own
            Accept replaces the default.
        idle_per_origin: idle connections kept per host and port (at least the endpoints one origin
            serves, or some reconnect every tick).
    """

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        idle_per_origin: int = DEFAULT_IDLE_PER_ORIGIN,
        gzip_on_loopback: bool = True,
    ) -> None:
        self.headers = dict(headers)
        self.idle_per_origin = idle_per_origin
        self.gzip_on_loopback = gzip_on_loopback
        """False: no Accept-Encoding to a loopback host (compressing a page that never leaves the host
        costs the server and this client CPU and saves no network)."""
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def get(self, url: str, *, max_bytes: int, accept: str | None = None) -> Answer:
        """GET `url`; the body (decoded from gzip or deflate) only when the status is 200.

        Raises:
            ConnectError, ConnectionLost (a reset), PageCut, BadAnswer, PageTooBig.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadAnswer(f"not an http(s) URL: {url}")
        origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        request = self._request(parts, accept)
        conn, reused = await self._connection(origin)
        try:
            answer, keep = await self._exchange(conn, request, max_bytes)
        except ConnectionError as err:
            conn.close()
            # A kept-alive connection the server closed while idle fails before the answer's first
            # byte: one retry on a fresh connection, as aiohttp does for an idempotent request.
            if not reused or getattr(err, "answer_started", False):
                raise
            conn, _ = await self._connection(origin, fresh=True)
            try:
                answer, keep = await self._exchange(conn, request, max_bytes)
            except BaseException:
                conn.close()
                raise
        except BaseException:  # an error, or a timeout cancelling the read: the connection's state is unknown
            conn.close()
            raise
        if keep and not self._closed:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.idle_per_origin:
                idle.append(conn)
                return answer
        conn.close()
        return answer

    def _request(self, parts: SplitResult, accept: str | None) -> bytes:
        """The request's bytes: GET, Host, the default headers (Accept replaced), basic auth from the URL."""
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        headers = dict(self.headers)
        if not self.gzip_on_loopback and is_loopback(parts.hostname or ""):
            headers.pop("Accept-Encoding", None)
        if accept is not None:
            headers["Accept"] = accept
        if parts.username is not None:
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode("ascii")
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _connection(
        self, origin: tuple[str, str, int], *, fresh: bool = False
    ) -> tuple[Connection, bool]:
        """An idle connection to `origin` (True: reused), else a new one."""
        idle = self._idle.get(origin)
        while idle and not fresh:
            conn = idle.pop()
            if conn.usable and not conn.buffer:
                return conn, True
            conn.close()
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(Connection, host, port, ssl=tls)
        except OSError as err:
            raise ConnectError(err) from None
        return conn, False

    async def _exchange(self, conn: Connection, request: bytes, max_bytes: int) -> tuple[Answer, bool]:
        """Send the request, read the answer: (the answer, whether the connection may be reused)."""
        assert conn.transport is not None
        try:
            conn.transport.write(request)
            # An end before the answer's first byte may be retried on a reused connection (get).
            return await read_answer(conn, max_bytes)
        except PageCut:
            raise
        except OSError as err:
            # Any socket error once connected (a reset first) is the connection failing, as aiohttp's
            # ClientOSError says it: a miss (collectors.scrape_http), not a fault of the page.
            lost = ConnectionLost(err.errno, err.strerror or str(err))
            lost.answer_started = getattr(err, "answer_started", False)  # type: ignore[attr-defined]
            raise lost from err

    async def close(self) -> None:
        """Close every idle connection; connections still in use close when their request ends."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    def __del__(self, _warn: object = warnings.warn) -> None:
        # A client dropped unclosed is a scrape source its owner never closed: said on stderr, as
        # aiohttp's "Unclosed client session" said it (tests/cli/test_startup_failures.py reads it).
        if not self._closed:
            assert callable(_warn)
            _warn(f"Unclosed scrape client {self!r}", ResourceWarning, source=self)
            log.error("Unclosed scrape client (a scrape source was not closed)")
