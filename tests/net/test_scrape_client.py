"""collectors.scrape_client and collectors.http_answer against real loopback servers: a raw TCP server
that writes canned HTTP answers byte for byte (framings, codings, faults), and the aiohttp page server
of the other net tests.

Expected bodies are the bytes the servers were given (or the golden page files), never the client's
own output; states and reasons are the ones fetch_page gives for the same faults through aiohttp
(tests/net/test_scrape.py).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from collectors.config import ServerTarget
from collectors.http_answer import PageTooBig
from collectors.scrape import ScrapeSource
from collectors.scrape_client import ScrapeClient, is_loopback
from collectors.scrape_http import SCRAPE_HEADERS, fetch_page, open_client
from storage.schemas import EndpointState
from tests.net.conftest import PageServer, free_port

PAGES = Path(__file__).resolve().parents[1] / "data" / "pages"
PAGE = b"# TYPE up gauge\nup 1\n" * 50
TS = 1_790_000_000_000

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
"""Answers one connection's requests; the int is the connection's number (from 1)."""


class RawServer:
    """A TCP server on 127.0.0.1 whose handler writes raw bytes; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/metrics"

    async def request(self, reader: asyncio.StreamReader) -> bool:
        """Read one request's head (False at the connection's end)."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        self.requests.append(head)
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self.connections)
        finally:
            writer.close()


def answering(*answers: bytes, then_close: bool = False) -> Handler:
    """A handler writing `answers` in turn, one per request on the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        for answer in answers:
            if not await SERVER.request(reader):
                return
            writer.write(answer)
            await writer.drain()
        if not then_close:
            while await SERVER.request(reader):
                writer.write(answers[-1])
                await writer.drain()

    return handle


SERVER: RawServer  # the server of the running test (handlers read its requests)


def raw(handler: Handler) -> RawServer:
    global SERVER
    SERVER = RawServer(handler)
    return SERVER


def ok(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: text/plain; version=0.0.4", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(body: bytes, size: int = 97) -> bytes:
    parts = [
        f"{len(body[i : i + size]):x};ext=1\r\n".encode() + body[i : i + size] + b"\r\n"
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\nX-Trailer: yes\r\n\r\n"


async def fetch(url: str, client: ScrapeClient, *, max_bytes: int = 1 << 20, timeout_s: float = 2.0):
    return await fetch_page(client, url, timeout_s=timeout_s, max_bytes=max_bytes)


async def test_length_chunked_and_close_framings_give_the_body_and_keep_alive_where_they_may() -> None:
    client = ScrapeClient(SCRAPE_HEADERS)
    cases = [
        (ok(PAGE, f"Content-Length: {len(PAGE)}"), 1),
        (ok(chunked(PAGE), "Transfer-Encoding: chunked"), 1),
        (ok(PAGE).replace(b"HTTP/1.1", b"HTTP/1.0"), 3),  # no length: the body ends with the connection
        (ok(PAGE, f"Content-Length: {len(PAGE)}", "Connection: close"), 3),
    ]
    for answer, connections in cases:
        async with raw(answering(answer, then_close=connections > 1)) as server:
            for _ in range(3):
                got = await fetch(server.url, client)
                assert got.state == EndpointState.OK, got.reason
                assert got.text == PAGE.decode()
            assert server.connections == connections, answer[:60]
    await client.close()
    assert SERVER.requests[0].startswith(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAccept-Encoding: gzip\r\n" in SERVER.requests[0]


async def test_gzip_and_both_deflates_are_decoded_and_the_limit_counts_decoded_bytes() -> None:
    client = ScrapeClient(SCRAPE_HEADERS)
    raw_deflate = zlib.compressobj(wbits=-15)
    encoded = {
        "gzip": gzip.compress(PAGE),
        "deflate": zlib.compress(PAGE),
        "deflate ": raw_deflate.compress(PAGE) + raw_deflate.flush(),
    }
    for coding, body in encoded.items():
        answer = ok(body, f"Content-Encoding: {coding.strip()}", f"Content-Length: {len(body)}")
        async with raw(answering(answer)) as server:
            got = await fetch(server.url, client)
            assert got.state == EndpointState.OK, (coding, got.reason)
            assert got.text == PAGE.decode()
    bomb = gzip.compress(b"0" * (8 << 20))  # 8 MiB of zeros in ~8 KB
    answer = ok(chunked(bomb, 4096), "Content-Encoding: gzip", "Transfer-Encoding: chunked")
    async with raw(answering(answer)) as server:
        got = await fetch(server.url, client, max_bytes=1 << 20)
        assert (got.state, got.reason) == (EndpointState.DOWN, "page larger than 1 MiB")
        with pytest.raises(PageTooBig):
            await client.get(server.url, max_bytes=1 << 20)
    await client.close()


async def test_interim_answers_are_skipped_and_errors_close_the_connection() -> None:
    client = ScrapeClient(SCRAPE_HEADERS)
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    async with raw(answering(interim + ok(PAGE, f"Content-Length: {len(PAGE)}"))) as server:
        got = await fetch(server.url, client)
        assert got.text == PAGE.decode()
    error = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops\n"
    async with raw(answering(error)) as server:
        for _ in range(2):
            got = await fetch(server.url, client)
            assert (got.state, got.reason) == (EndpointState.DOWN, "HTTP 500")
        assert server.connections == 2  # the unread body goes with its connection
    for bad, why in (
        (b"HTTP/2 200 OK\r\n\r\n", "malformed HTTP status line"),
        (b"ICY 200 OK\r\n\r\n", "malformed HTTP status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed HTTP header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nabcde", "malformed Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "unsupported Transfer-Encoding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx",
            "unsupported Content-Encoding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
            "malformed compressed",
        ),
    ):
        async with raw(answering(bad)) as server:
            got = await fetch(server.url, client)
            assert got.state == EndpointState.DOWN and got.reason.startswith(f"malformed answer: {why}"), (
                bad,
                got.reason,
            )
    await client.close()


async def test_a_kept_alive_connection_closed_by_the_server_while_idle_is_retried_once() -> None:
    """The fault: a server drops an idle kept-alive connection as the next request goes out (its idle
    timeout). aiohttp retries such a request once; so must the scrape, or a healthy endpoint misses."""
    body = ok(PAGE, f"Content-Length: {len(PAGE)}")

    async def drops_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if await SERVER.request(reader):
            writer.write(body)
            await writer.drain()
        if n == 1:
            await SERVER.request(reader)  # the next request arrives; the server closes unanswered
            return
        while await SERVER.request(reader):
            writer.write(body)
            await writer.drain()

    client = ScrapeClient(SCRAPE_HEADERS)
    async with raw(drops_second) as server:
        for _ in range(3):
            got = await fetch(server.url, client)
            assert (got.state, got.reason) == (EndpointState.OK, "")
        assert server.connections == 2
    await client.close()


async def test_answers_cut_short_or_reset_are_misses_and_a_timeout_leaves_no_connection_behind() -> None:
    client = ScrapeClient(SCRAPE_HEADERS)
    for answer in (
        ok(PAGE[:100], f"Content-Length: {len(PAGE)}"),
        ok(chunked(PAGE)[:300], "Transfer-Encoding: chunked"),
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ):
        async with raw(answering(answer, then_close=True)) as server:
            got = await fetch(server.url, client)
            assert (got.state, got.reason) == (EndpointState.STALE, "connection closed mid-page"), answer[:40]

    async def resets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await SERVER.request(reader)
        writer.write(ok(PAGE[:100], f"Content-Length: {len(PAGE)}"))
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST

    async with raw(resets) as server:
        got = await fetch(server.url, client)
        assert (got.state, got.reason) == (EndpointState.STALE, "connection reset")

    answered = asyncio.Event()

    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await SERVER.request(reader):
            if n == 1 and not answered.is_set():
                answered.set()
                await asyncio.sleep(0.5)  # past the client's timeout: its read is cancelled
            writer.write(ok(PAGE, f"Content-Length: {len(PAGE)}"))
            await writer.drain()

    async with raw(slow_first) as server:
        got = await fetch(server.url, client, timeout_s=0.2)
        assert got.state == EndpointState.STALE and got.timed_out
        got = await fetch(server.url, client)
        assert got.text == PAGE.decode()
        assert server.connections == 2  # the timed-out connection was not reused (its answer was late)
    refused = await fetch(f"http://127.0.0.1:{free_port()}/metrics", client)
    assert (refused.state, refused.reason) == (EndpointState.DOWN, "connection refused")
    await client.close()


def test_the_aiohttp_page_server_golden_pages_come_back_whole_gzipped_and_kept_alive(
    pages: PageServer,
) -> None:
    async def scrape() -> list[str | None]:
        client = ScrapeClient(SCRAPE_HEADERS)
        got = [await fetch(pages.url(f"/{name}"), client) for name in ("vllm", "sglang", "vllm", "trtllm")]
        big = await fetch(pages.url("/big"), client, max_bytes=4 << 20)
        assert (big.state, big.reason) == (EndpointState.DOWN, "page larger than 4 MiB")
        await client.close()
        return [g.text for g in got]

    texts = asyncio.run(scrape())
    assert texts == [(PAGES / f"{name}.txt").read_text() for name in ("vllm", "sglang", "vllm", "trtllm")]
    assert pages.encodings[-4:] == ["gzip"] * 4
    assert len(set(pages.peers[-4:])) == 1  # one kept-alive connection carried all four


def test_many_endpoints_on_one_host_and_port_keep_a_connection_each(pages: PageServer) -> None:
    """A rack config may put every endpoint behind one host and port (paths apart): the second tick
    reuses all of the first tick's connections, none reconnects."""
    servers = [ServerTarget(f"vllm-{n:02d}", pages.url("/vllm"), engine="vllm") for n in range(120)]
    source = ScrapeSource([], servers, timeout_s=20.0)
    try:
        source.poll(TS)
        first = set(pages.peers)
        source.poll(TS + 1000)
    finally:
        source.close()
    assert len(pages.peers) == 240
    assert set(pages.peers) == first and len(first) == 120


def test_the_scrape_source_asks_for_gzip_from_other_hosts_only() -> None:
    """A scrape source's client (open_client) asks every host for gzip but a loopback one: the rack's
    trays and servers are across a network, a simulator or a local exporter is not."""
    for host in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("10.0.0.5", "192.168.1.20", "gb300-t03", "tray01.rack.example", "::ffff:10.0.0.1", ""):
        assert not is_loopback(host), host

    async def answered(client: ScrapeClient) -> bytes:
        async with raw(answering(ok(PAGE, f"Content-Length: {len(PAGE)}"))) as server:
            got = await fetch(server.url, client)
            assert got.state == EndpointState.OK, got.reason
        await client.close()
        return SERVER.requests[-1]

    assert b"Accept-Encoding" not in asyncio.run(answered(open_client(1)))
    assert b"\r\nAccept-Encoding: gzip\r\n" in asyncio.run(answered(ScrapeClient(SCRAPE_HEADERS)))
