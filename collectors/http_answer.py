"""HTTP/1.1 answers as a scrape reads them, off one connection (collectors.scrape_client sends the GETs).

A status line and headers (1xx interim answers skipped), then a body framed by chunked coding,
Content-Length or the connection's end (RFC 9112 section 6.3), decoded from gzip or deflate (zlib or
raw, as aiohttp reads it) and refused past the byte limit counted in decoded bytes. Whether the
connection may carry another request follows from the framing and the Connection header. Errors:
PageCut (the connection ended before the answer did; `answer_started` marks one that ended after the
answer's first byte), the connection's own OSError (a reset), BadAnswer, PageTooBig.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 << 10
"""The longest status line and headers accepted (aiohttp's default limit is 8 KB per line)."""
PAUSE_BYTES = 1 << 20
"""Unread bytes past which a connection stops reading from its socket until the reader catches up."""


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


class Connection(asyncio.Protocol):
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


async def read_answer(conn: Connection, max_bytes: int) -> tuple[Answer, bool]:
    """The next answer on `conn` and whether the connection may carry another request.

    An error once the answer has begun carries `answer_started` (a request must not be retried then).
    """
    version, status, headers = await read_head(conn)
    try:
        return await read_rest(conn, version, status, headers, max_bytes)
    except ConnectionError as err:
        err.answer_started = True  # type: ignore[attr-defined]
        raise


async def read_head(conn: Connection) -> tuple[str, int, dict[str, str]]:
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


async def read_rest(
    conn: Connection, version: str, status: int, headers: dict[str, str], max_bytes: int
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


async def _read_length(conn: Connection, body: _Body, length: int) -> None:
    while length:
        if not conn.buffer:
            await conn.more()
        piece = conn.take(length)
        length -= len(piece)
        body.add(piece)


async def _read_line(conn: Connection) -> bytes:
    while True:
        end = conn.buffer.find(b"\r\n")
        if end >= 0:
            return conn.take(end + 2)[:-2]
        if len(conn.buffer) > MAX_HEAD_BYTES:
            raise BadAnswer("a chunk header line too long")
        await conn.more()


async def _read_chunked(conn: Connection, body: _Body) -> None:
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
