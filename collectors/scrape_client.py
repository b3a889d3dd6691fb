"""The scrape source's HTTP/1.1 client: one GET per endpoint and tick over kept-alive connections.

Why not aiohttp's ClientSession here (it stays for every other client of the project): a rack's scrape
is ~90 GETs a second of small pages to the same endpoints, and ClientSession's per-request machinery
(URL and header objects, cookie jar, traces, timers, stream reader) cost ~160 us of CPU a request, a
third of the whole scrape's CPU (bench/bench_scrape.py; docs/benchmarks.md, fourth pass). What a
scrape needs is narrow: GET, a few fixed headers, a status, a Content-Type, a body framed by
Content-Length, chunked coding or the connection's end, gzip/deflate, a byte limit, and keep-alive.
That is what this module does, on asyncio's transports (plain or TLS), and nothing else: no
redirects, no cookies, no proxies (the session never had them: allow_redirects=False, trust_env off).

Errors are raised as the exception types fetch_page already reads (collectors.scrape_http), so every
endpoint fault keeps its state and reason: a refused or failed connect (ConnectError), a reset or an
answer cut short (ConnectionResetError, PageCut), a malformed answer (BadAnswer), a page past the
limit (PageTooBig). A connection is reused only after an answer read to its end whose framing says
where it ends; any other end (an error, a timeout cancelling the read) closes it. A kept-alive
connection the server closed while idle is retried once on a new one, as aiohttp does for an
idempotent request (client.py retry_persistent_connection).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

MAX_HEAD_BYTES = 64 << 10
"""The longest status line and headers accepted (aiohttp's default limit is 8 KB per line)."""
PAUSE_BYTES = 1 << 20
"""Unread bytes past which a connection stops reading from its socket until the reader catches up."""
DEFAULT_IDLE_PER_ORIGIN = 100
"""Idle connections kept per host and port by default (aiohttp's connector limit was 100 in all):
one per endpoint is the need, and many endpoints may share one origin under different paths."""


class ConnectError(OSError):
    """The connection could not be opened (refused, unreachable, DNS); `cause` is the OS error."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause.errno, str(cause))
        self.cause = cause


class PageCut(ConnectionError):
    """The connection ended before the answer did."""


class BadAnswer(ValueError):
    """An answer that is not HTTP/1.x as this client reads it (status line, headers, chunks, coding)."""


class PageTooBig(Exception):
    """The page passed the byte limit."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, Content-Type and the decoded body (empty unless the status is 200)."""

    status: int
    content_type: str | None
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: bytes as they arrive, and a way to wait for more."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > PAUSE_BYTES and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def usable(self) -> bool:
        """Whether an idle connection may carry another request (not closed by either side)."""
        return not self.eof and self.transport is not None and not self.transport.is_closing()

    async def more(self) -> None:
        """Wait for more bytes; raise when the connection ended (reset, or cut short)."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if self.eof:
            raise self.error if isinstance(self.error, OSError) else PageCut("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self.eof and not self.buffer:
            raise self.error if isinstance(self.error, OSError) else PageCut("connection closed")

    def take(self, count: int) -> bytes:
        """The next `count` buffered bytes (all there are, if fewer), removed from the buffer."""
        out = bytes(self.buffer[:count])
        del self.buffer[:count]
        return out

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ScrapeClient:
    """GETs over kept-alive connections, at most `idle_per_origin` idle ones per host and port.

    Args:
        headers: sent with every request (Accept, Accept-Encoding, User-Agent); a request's own
            Accept replaces the default.
        idle_per_origin: idle connections kept per host and port (at least the endpoints one origin
            serves, or some reconnect every tick).
    """

    def __init__(self, headers: Mapping[str, str], *, idle_per_origin: int = DEFAULT_IDLE_PER_ORIGIN) -> None:
        self.headers = dict(headers)
        self.idle_per_origin = idle_per_origin
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def get(self, url: str, *, max_bytes: int, accept: str | None = None) -> Answer:
        """GET `url`; the body (decoded from gzip or deflate) only when the status is 200.

        Raises:
            ConnectError, ConnectionError (reset, PageCut), BadAnswer, PageTooBig, OSError.
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
    ) -> tuple[_Connection, bool]:
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
            _, conn = await loop.create_connection(_Connection, host, port, ssl=tls)
        except OSError as err:
            raise ConnectError(err) from None
        return conn, False

    async def _exchange(self, conn: _Connection, request: bytes, max_bytes: int) -> tuple[Answer, bool]:
        """Send the request, read the answer: (the answer, whether the connection may be reused)."""
        assert conn.transport is not None
        try:
            conn.transport.write(request)
            # An end before the answer's first byte may be retried on a reused connection (get).
            version, status, headers = await _read_head(conn)
            try:
                return await _read_rest(conn, version, status, headers, max_bytes)
            except ConnectionError as err:
                err.answer_started = True  # type: ignore[attr-defined]
                raise
        except OSError as err:
            if isinstance(err, ConnectionError):
                raise
            # Any other socket error once connected is the connection failing, as aiohttp's
            # ClientOSError says it: a miss (collectors.scrape_http), not a fault of the page.
            raise ConnectionError(err.errno, err.strerror or str(err)) from err

    async def close(self) -> None:
        """Close every idle connection; connections still in use close when their request ends."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def _read_head(conn: _Connection) -> tuple[str, int, dict[str, str]]:
    """The status line and headers of the next final answer (1xx interim answers skipped)."""
    while True:
        while True:
            end = conn.buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(conn.buffer) > MAX_HEAD_BYTES:
                raise BadAnswer(f"HTTP headers longer than {MAX_HEAD_BYTES} bytes")
            if conn.eof and conn.buffer:
                raise _cut(PageCut("connection closed mid-header"))
            await conn.more()
        head = conn.take(end + 4)[:-4].decode("latin-1").split("\r\n")
        version, status = _status(head[0])
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise BadAnswer(f"malformed HTTP header line {line[:60]!r}")
            key = name.lower()
            value = value.strip(" \t")
            # Repeated headers join with commas (RFC 9110 section 5.3); Content-Length must agree.
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if 100 <= status < 200 and status != 101:
            continue
        return version, status, headers


def _status(line: str) -> tuple[str, int]:
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if (
        version not in ("HTTP/1.1", "HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in ("", " ")
    ):
        raise BadAnswer(f"malformed HTTP status line {line[:60]!r}")
    return version, int(code)


async def _read_rest(
    conn: _Connection, version: str, status: int, headers: dict[str, str], max_bytes: int
) -> tuple[Answer, bool]:
    """The answer's body (decoded) and whether the connection may carry another request."""
    content_type = headers.get("content-type")
    close = "close" in headers.get("connection", "").lower() or (
        version == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower()
    )
    if status != 200:
        return Answer(status, content_type, b""), False  # body unread: the connection goes
    body = _Body(_coding(headers.get("content-encoding", "")), max_bytes)
    coding = headers.get("transfer-encoding", "").lower()
    if coding:
        if coding.strip() != "chunked":  # chunked alone: a gzip transfer-coding is not read here
            raise BadAnswer(f"unsupported Transfer-Encoding {coding[:40]!r}")
        await _read_chunked(conn, body)
    elif "content-length" in headers:
        await _read_length(conn, body, _length(headers["content-length"]))
    else:  # framed by the connection's end
        close = True
        while True:
            body.add(conn.take(len(conn.buffer)))
            if conn.eof:
                if isinstance(conn.error, OSError):
                    raise conn.error
                break
            try:
                await conn.more()
            except PageCut:
                break
    return Answer(status, content_type, body.finish()), not close


def _length(text: str) -> int:
    values = {v.strip() for v in text.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise BadAnswer(f"malformed Content-Length {text[:40]!r}")
    return int(values.pop())


async def _read_length(conn: _Connection, body: _Body, length: int) -> None:
    while length:
        if not conn.buffer:
            await conn.more()
        piece = conn.take(length)
        length -= len(piece)
        body.add(piece)


async def _read_line(conn: _Connection) -> bytes:
    while True:
        end = conn.buffer.find(b"\r\n")
        if end >= 0:
            return conn.take(end + 2)[:-2]
        if len(conn.buffer) > MAX_HEAD_BYTES:
            raise BadAnswer("a chunk header line too long")
        await conn.more()


async def _read_chunked(conn: _Connection, body: _Body) -> None:
    """A chunked body (RFC 9112 section 7.1): sized chunks, a last chunk, trailers up to a blank line."""
    while True:
        size_text = (await _read_line(conn)).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadAnswer(f"malformed chunk size {size_text[:20]!r}") from None
        if size < 0 or size_text.startswith((b"-", b"+", b"0x", b"0X")):
            raise BadAnswer(f"malformed chunk size {size_text[:20]!r}")
        if size == 0:
            while await _read_line(conn):  # trailers, up to the blank line
                pass
            return
        await _read_length(conn, body, size)
        if await _read_line(conn):
            raise BadAnswer("chunk data longer than its size")


class _Body:
    """A body as it arrives: decoded (`coding`: "", "gzip" or "deflate"), refused past `max_bytes`
    decoded bytes."""

    def __init__(self, coding: str, max_bytes: int) -> None:
        self.coding = coding
        self.decoder: zlib._Decompress | None = None
        if coding == "gzip":
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.max_bytes = max_bytes
        self.data = bytearray()
        self.fed = False
        """Whether any encoded byte came (an empty body with a Content-Encoding is an empty page)."""

    def add(self, piece: bytes) -> None:
        if self.coding == "deflate" and self.decoder is None and piece:
            # "deflate" is zlib-wrapped by the RFC, raw deflate from some servers (aiohttp reads both)
            self.decoder = zlib.decompressobj(zlib.MAX_WBITS if piece[0] & 0x0F == 8 else -zlib.MAX_WBITS)
        if self.decoder is not None:
            self.fed = self.fed or bool(piece)
            try:
                piece = self.decoder.decompress(piece, self.max_bytes + 1 - len(self.data))
            except zlib.error as err:
                raise BadAnswer(f"malformed compressed body: {err}") from None
            if self.decoder.unconsumed_tail:
                raise PageTooBig
        if len(self.data) + len(piece) > self.max_bytes:
            raise PageTooBig
        self.data += piece

    def finish(self) -> bytes:
        """The whole decoded body (a compressed one must end where its stream does)."""
        if self.decoder is not None:
            try:
                rest = self.decoder.flush()
            except zlib.error as err:
                raise BadAnswer(f"malformed compressed body: {err}") from None
            if len(self.data) + len(rest) > self.max_bytes:
                raise PageTooBig
            self.data += rest
            if self.fed and not self.decoder.eof:
                raise BadAnswer("compressed body cut short")
        return bytes(self.data)


def _coding(text: str) -> str:
    """The Content-Encoding as _Body reads it: "" (none, identity), "gzip" or "deflate"."""
    coding = text.strip().lower()
    if coding in ("", "identity"):
        return ""
    if coding in ("gzip", "x-gzip"):
        return "gzip"
    if coding == "deflate":
        return "deflate"
    raise BadAnswer(f"unsupported Content-Encoding {coding[:40]!r}")


def _cut(err: PageCut) -> PageCut:
    err.answer_started = True  # type: ignore[attr-defined]
    return err
