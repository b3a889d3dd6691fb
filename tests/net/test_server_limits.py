"""The agent's HTTP servers under hostile clients on loopback: `monitor agent`'s own (asyncio and h11,
collectors.agent_http) and the simulator's (aiohttp, collectors.aiohttp_serving), behind one guard.

The servers run in a child process (tests/net/sim_child.py) under an open-file limit of 512, so 1,000
idle connections really exhaust its descriptors, as they did the agent's: accept failed with EMFILE and
no scrape got in. Nothing here asserts a speed: a scrape either answers within its timeout or it does not.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from collectors.config import RackConfig, load_config
from collectors.mappings.tray_arrow import decode_tray_stream
from collectors.mappings.tray_stream import MEDIA_TYPE
from collectors.promtext import parse
from collectors.scrape import ScrapeSource
from storage.schemas import EndpointState, GpuState
from tests.net.sim_child import agent_in_child, sim_in_child

IDLE = 1000
SLOW = 50
CHILD_NOFILE = 512


@pytest.fixture(autouse=True)
def enough_descriptors() -> Iterator[None]:
    """This process holds the attackers' sockets and the scraper's: raise its own soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE + SLOW + 400
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard open-file limit ({hard}) is below the {need} this test holds")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def tray_address(config: RackConfig) -> tuple[str, int]:
    url = urlsplit(config.trays[0].url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def open_idle(address: tuple[str, int], count: int, wave: int = 25) -> list[socket.socket]:
    """`count` connections that send nothing, opened `wave` at a time, each wave given up to 1 s to
    connect (all at once, most SYNs would meet a full listen queue and back off for up to a minute)."""
    socks: list[socket.socket] = []
    while len(socks) < count:
        batch = []
        for _ in range(min(wave, count - len(socks))):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(address)
            batch.append(sock)
        wait_connected(batch, 1.0)
        socks += batch
    return socks


def wait_connected(batch: list[socket.socket], seconds: float) -> None:
    """Wait until every socket of `batch` is connected (writable), or `seconds` pass."""
    poller = select.poll()  # not select(): this process holds descriptors past FD_SETSIZE
    for sock in batch:
        poller.register(sock, select.POLLOUT)
    pending = {sock.fileno() for sock in batch}
    give_up = time.monotonic() + seconds
    while pending and (left := give_up - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            pending.discard(fd)
            poller.unregister(fd)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed this connection (EOF or a reset waiting to be read)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # open, nothing to read
    except ConnectionResetError:
        return True
    except OSError as err:
        if err.errno == errno.ENOTCONN:
            return False  # still connecting (the listen queue was full)
        raise


@contextlib.contextmanager
def dribbling(address: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    """`count` slowloris clients: each sends one byte of a request every 0.5 s, never finishing it."""
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    socks = open_idle(address, count)
    stop = threading.Event()

    def dribble() -> None:
        for k in range(len(request)):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(request[k : k + 1])
            if stop.wait(0.5):
                return

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join(10)
        for sock in socks:
            sock.close()


def fetch_text(url: str) -> str:
    """One plain GET (a fresh connection) within 10 s: the page, or "" without one."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def wait_until(check, seconds: float) -> bool:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_a_scrape_answers_while_1000_idle_and_50_slow_clients_are_held(tmp_path: Path) -> None:
    # Long timers: here only the connection cap may make room.
    args = ("--nofile", str(CHILD_NOFILE), "--idle", "120", "--header", "120")
    with sim_in_child(tmp_path, *args) as path:
        config = load_config(path)
        address = tray_address(config)
        idle = open_idle(address, IDLE)
        try:
            wait_until(lambda: sum(map(closed_by_server, idle)) >= IDLE - CHILD_NOFILE, 30)
            with dribbling(address, SLOW) as slow:
                source = ScrapeSource.from_config(config, timeout_s=10.0)
                try:
                    frame = source.poll(int(time.time() * 1000))
                    statuses = source.statuses()
                finally:
                    source.close()
                page = fetch_text(config.trays[0].url)
                slow_closed = sum(map(closed_by_server, slow))
            idle_closed = sum(map(closed_by_server, idle))
        finally:
            for sock in idle:
                sock.close()
    assert [(s.name, s.reason) for s in statuses if s.state != EndpointState.OK] == []
    # More connections than the child has descriptors: the longest idle went first, and the slow
    # clients, the newest idle connections, are still held and still dribbling.
    assert idle_closed >= IDLE - CHILD_NOFILE
    assert slow_closed == 0
    gpus = frame.table("gpu").to_pylist()
    assert len(gpus) == 72 and all(g["state"] == GpuState.OK for g in gpus)
    assert all(r["state"] == EndpointState.OK for r in frame.table("serving").to_pylist())
    # A full, valid page: it parses, and its last family has every GPU of the tray.
    last = list(parse(page).values())[-1]
    assert page.endswith("\n") and {labels["gpu"] for _, labels, *_ in last.samples} == {"0", "1", "2", "3"}


def test_the_agent_answers_while_1000_idle_and_50_slow_clients_are_held() -> None:
    """`monitor agent`'s own server (h11), as the simulator's above: the cap makes room, a scrape of
    each kind answers, the slow clients are still held."""
    args = ("--nofile", str(CHILD_NOFILE), "--idle", "120", "--header", "120")
    with agent_in_child(*args) as address:
        url = f"http://{address[0]}:{address[1]}/metrics"
        idle = open_idle(address, IDLE)
        try:
            wait_until(lambda: sum(map(closed_by_server, idle)) >= IDLE - CHILD_NOFILE, 30)
            with dribbling(address, SLOW) as slow:
                page = fetch_text(url)
                with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": MEDIA_TYPE})) as r:
                    stream = decode_tray_stream(r.read())
                slow_closed = sum(map(closed_by_server, slow))
            idle_closed = sum(map(closed_by_server, idle))
        finally:
            for sock in idle:
                sock.close()
    assert idle_closed >= IDLE - CHILD_NOFILE
    assert slow_closed == 0
    last = list(parse(page).values())[-1]
    assert page.endswith("\n") and {labels["gpu"] for _, labels, *_ in last.samples} == {"0", "1", "2", "3"}
    assert stream.gpu.num_rows == 4 and stream.hostname == "sim-tray01"


@pytest.fixture(scope="module", params=["sim", "agent"])
def quick_timers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """A child with 2 s idle and header timeouts: the simulator's servers (yields tray 1's address), or
    `monitor agent`'s own server on tray 1 (its address)."""
    if request.param == "agent":
        with agent_in_child("--idle", "2", "--header", "2") as address:
            yield address
        return
    with sim_in_child(tmp_path_factory.mktemp("sim"), "--idle", "2", "--header", "2") as path:
        yield tray_address(load_config(path))


def test_idle_and_slow_connections_are_closed_after_their_timeouts(quick_timers) -> None:
    idle = open_idle(quick_timers, 20)
    served = socket.create_connection(quick_timers, timeout=10)
    try:
        served.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert served.recv(4096).startswith(b"HTTP/1.1 200")
        served.setblocking(False)  # kept alive, then idle
        with dribbling(quick_timers, 5) as slow:
            assert wait_until(lambda: all(map(closed_by_server, [*idle, *slow, served])), 60)
    finally:
        for sock in [*idle, served]:
            sock.close()


def answer_then_eof(address: tuple[str, int], request: bytes) -> bytes:
    """Send one request; everything the server says until it closes the connection."""
    with socket.create_connection(address, timeout=30) as sock:
        with contextlib.suppress(ConnectionResetError):
            sock.sendall(request)
        said = b""
        while chunk := sock.recv(65536):
            said += chunk
    return said


def test_an_oversize_header_or_a_body_is_refused_and_the_connection_closed(quick_timers) -> None:
    # 6,000 bytes: over the agent's 4 KiB field limit, under aiohttp's default (8,190).
    big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 6000 + b"\r\n\r\n"
    assert answer_then_eof(quick_timers, big).split(b" ", 2)[1] in (b"400", b"431")
    with_body = b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000
    said = answer_then_eof(quick_timers, with_body)
    assert said.split(b" ", 2)[1] == b"413"
    assert b"DCGM_FI" not in said
