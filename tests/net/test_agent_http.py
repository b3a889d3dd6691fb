"""`monitor agent`'s HTTP/1.1 server (collectors.agent_http: asyncio and h11) as a client meets it.

Raw bytes over loopback against the real server on a simulated tray, so framing is what a client reads:
keep-alive, pipelining, HTTP/1.0, HEAD, the paths and methods it refuses, and the answers' headers.
The hostile clients (1,000 idle, slowloris, oversize heads) are in test_server_limits.py.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from http import HTTPStatus

import pytest

from collectors.agent_http import serve_agent
from collectors.agent_server import AgentPage, bind_socket
from collectors.clock import SimClock
from collectors.mappings.tray_arrow import decode_tray_stream
from collectors.mappings.tray_stream import MEDIA_TYPE
from collectors.nvml import NvmlCollector
from collectors.promtext import parse
from collectors.sim import SimRack

Address = tuple[str, int]


@pytest.fixture
async def agent() -> AsyncIterator[Address]:
    clock = SimClock(start=1_760_000_000.0)
    collector = NvmlCollector(SimRack(seed=2, clock=clock).tray_of(4), name="tray04")
    sock = bind_socket("127.0.0.1", 0)
    server, _ = await serve_agent(AgentPage(collector, clock=clock, hostname="tray04"), sock)
    try:
        yield "127.0.0.1", sock.getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        collector.close()


async def read_answer(reader: asyncio.StreamReader, *, head_only: bool = False) -> tuple[int, dict, bytes]:
    """One answer off the connection: status, headers (lower-case names), body (by Content-Length)."""
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    assert status_line.rstrip().split(b" ", 2)[2] == HTTPStatus(status).phrase.encode()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", 0))
    return status, headers, await reader.readexactly(length)


async def exchange(
    address: Address, raw: bytes, answers: int = 1
) -> tuple[list[tuple[int, dict, bytes]], bool]:
    """Send `raw`, read `answers` answers; and whether the server closed the connection after them."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(raw)
        got = [await asyncio.wait_for(read_answer(reader), 30) for _ in range(answers)]
        try:
            closed = await asyncio.wait_for(reader.read(1), 1.0) == b""
        except TimeoutError:
            closed = False
        return got, closed
    finally:
        writer.close()


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: tray04", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_text_page_kept_alive_and_a_pipelined_arrow_answer(agent: Address) -> None:
    raw = get("/metrics") + get("/metrics?x=1", f"Accept: {MEDIA_TYPE}") + get("/healthz")
    (text, arrow, health), closed = await exchange(agent, raw, answers=3)
    assert not closed  # HTTP/1.1: kept alive after three answers
    assert text[0] == 200 and text[1]["content-type"].startswith("text/plain; version=0.0.4")
    assert text[1]["vary"] == "Accept, Accept-Encoding"
    families = parse(text[2].decode())
    assert {labels["gpu"] for _, labels, *_ in families["DCGM_FI_DEV_GPU_TEMP"].samples} == {
        "0",
        "1",
        "2",
        "3",
    }
    assert arrow[0] == 200 and arrow[1]["content-type"] == MEDIA_TYPE
    stream = decode_tray_stream(arrow[2])
    assert stream.hostname == "tray04" and stream.gpu.column("tray").to_pylist() == [4, 4, 4, 4]
    assert health[:1] == (200,) and health[2] == b"ok\n"


async def test_gzip_when_accepted_and_head_without_a_body(agent: Address) -> None:
    ((status, headers, body),), _ = await exchange(agent, get("/metrics", "Accept-Encoding: gzip, br"))
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body).startswith(b"# HELP ")
    reader, writer = await asyncio.open_connection(*agent)
    try:
        writer.write(get("/metrics", method="HEAD") + get("/healthz"))
        status, headers, nothing = await read_answer(reader, head_only=True)
        assert status == 200 and int(headers["content-length"]) > 10_000 and nothing == b""
        status, _, body = await read_answer(reader)  # the next answer starts right after HEAD's headers
        assert (status, body) == (200, b"ok\n")
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (get("/"), 404),
        (get("/metrics/../etc"), 404),
        (get("/metrics", method="POST"), 405),
        (get("/metrics", method="DELETE"), 405),
    ],
)
async def test_other_paths_and_methods_are_refused_and_the_connection_kept(
    agent: Address, raw: bytes, status: int
) -> None:
    (answer, health), closed = await exchange(agent, raw + get("/healthz"), answers=2)
    assert answer[0] == status and b"DCGM" not in answer[2]
    assert health[0] == 200 and not closed


async def test_http_1_0_and_connection_close_end_the_connection(agent: Address) -> None:
    for raw in (get("/healthz", version="1.0"), get("/healthz", "Connection: close")):
        ((status, _, body),), closed = await exchange(agent, raw)
        assert (status, body, closed) == (200, b"ok\n", True)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (get("/metrics", "Content-Length: 5") + b"hello", 413),
        (get("/metrics", "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n", 413),
        (get("/metrics", "X-Big: " + "a" * 5000), 431),
        (get("/" + "m" * 5000), 431),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Head: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
)
async def test_bodies_oversize_heads_and_garbage_are_refused_and_closed(
    agent: Address, raw: bytes, status: int
) -> None:
    ((got, headers, _),), closed = await exchange(agent, raw)
    assert got == status and headers.get("connection") == "close" and closed


async def test_a_body_of_length_0_is_no_body(agent: Address) -> None:
    ((status, _, body),), closed = await exchange(agent, get("/healthz", "Content-Length: 0"))
    assert (status, body, closed) == (200, b"ok\n", False)


async def test_a_failed_poll_is_this_scrape_s_500_and_the_server_goes_on() -> None:
    class Broken:
        gpus: tuple = ()

        def poll_plain(self, ts_ms: int) -> None:
            raise RuntimeError("NVML went away")

    sock = bind_socket("127.0.0.1", 0)
    server, _ = await serve_agent(AgentPage(Broken()), sock)
    try:
        address = ("127.0.0.1", sock.getsockname()[1])
        (metrics, health), closed = await exchange(address, get("/metrics") + get("/healthz"), answers=2)
    finally:
        server.close()
    assert metrics[0] == 500 and b"RuntimeError: NVML went away" in metrics[2]
    assert health[0] == 200 and not closed
