"""Connection limits for the agent's HTTP server (collectors.agent_http) and the simulator's (aiohttp:
collectors.aiohttp_serving), at the level of asyncio's Protocol, whatever speaks HTTP inside.

Without them, 1,000 idle TCP connections (no bytes sent) held every file descriptor the process may
open; asyncio's accept then fails with EMFILE and retries once a second (asyncio selector_events,
_accept_connection), so no scrape got in until the clients let go, and idle sockets were never closed.
aiohttp's server has no connection cap, and its keep-alive timer closed a connection that never sent a
request only from aiohttp 3.14 on (aio-libs/aiohttp#13681), so the guard keeps its own:

- a cap on open connections, kept under the open-file limit (RLIMIT_NOFILE) with room to spare; at the
  cap a new connection closes the one that has been idle longest, or, when every one is busy with a
  request, is answered 503 and closed at once;
- an idle timeout: a connection must start a request within `idle_timeout_s` of opening or of its last
  response; and a header timeout: once a request's first byte arrives, its headers must be complete
  within `header_timeout_s` (a client dribbling bytes, slowloris, is closed then);
- bounded requests: limits on the request line and each header field (aiohttp's own, and the agent's
  h11 protocol's; an oversize one is answered 400 or 431 and the connection closed), and no request
  body at all (answered 413; a scrape sends none, and the connection is closed rather than
  drained).

The guard wraps each connection's protocol (asyncio's Protocol interface only); the HTTP side tells it
when a request starts and ends (request_started / request_done: an aiohttp middleware, or the agent's
own protocol).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

ACCEPT_BACKLOG = 32
"""The listen queue, and (asyncio) the most connections accepted in one go before the guard sees them."""
FD_HEADROOM = 160
"""Descriptors kept free under RLIMIT_NOFILE: 64 for the rest of the process (NVML, logs, executor),
and three accept batches taken before their connections reach the guard."""
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"
)
LOG_EVERY_S = 60.0
"""Closed and refused connections are logged at most this often (a flood must not flood the log)."""


class _OneLineNow(logging.Filter):
    """aiohttp logs each malformed request with its traceback: here one line, one per LOG_EVERY_S."""

    def __init__(self) -> None:
        super().__init__()
        self._at = float("-inf")
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._at < LOG_EVERY_S:
            self._dropped += 1
            return False
        self._at = now
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            said = " ".join(str(err).split())[:160]
            message = f"{message}: {type(err).__name__}: {said}".rstrip(": ")
        if self._dropped:
            message += f" ({self._dropped} more since the last one logged)"
            self._dropped = 0
        record.msg, record.args, record.exc_info, record.exc_text = message, (), None, None
        return True


REQUEST_LOG = logging.getLogger("collectors.http_guard.requests")
"""The servers' request-handling log (aiohttp's `logger`; the agent's own), filtered by _OneLineNow."""
REQUEST_LOG.addFilter(_OneLineNow())


@dataclass(frozen=True)
class ServerLimits:
    """What one server process allows its clients.

    Attributes:
        max_connections: open connections at most (lowered to fit the open-file limit).
        idle_timeout_s: a connection must start a request this soon after opening or its last response.
        header_timeout_s: a request's headers must be complete this soon after its first byte.
        max_line_size: the request line's bytes at most (aiohttp's max_line_size; the agent's target).
        max_field_size: one header field's bytes at most (aiohttp's max_field_size; the agent's too).
    """

    max_connections: int = 256
    idle_timeout_s: float = 15.0
    header_timeout_s: float = 5.0
    max_line_size: int = 4096
    max_field_size: int = 4096


class Guarded(asyncio.Protocol):
    """One connection: its HTTP protocol (aiohttp's, or the agent's) behind the guard's bookkeeping."""

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.factory = factory
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.heard = False
        """Whether a byte of the next request has arrived (its header timer is running)."""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard.admit(self):
            transport.write(REFUSAL)
            transport.close()
            return
        self.inner = self.factory()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if not self.busy and not self.heard:
            self.heard = True
            self.guard.arm(self, self.guard.limits.header_timeout_s)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class ConnectionGuard:
    """The connection cap and timers of one server process (all its listening sockets share it)."""

    def __init__(self, limits: ServerLimits | None = None) -> None:
        self.limits = limits or ServerLimits()
        self.cap = self.limits.max_connections
        self._open: set[Guarded] = set()
        self._idle: OrderedDict[Guarded, None] = OrderedDict()
        """Admitted connections not in a request, longest idle first."""
        self._by_transport: dict[asyncio.BaseTransport, Guarded] = {}
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0
        self._logged_at = float("-inf")

    # -- admission -----------------------------------------------------------------------------

    def fit_to_fd_limit(self) -> int:
        """Lower the cap to what the open-file limit leaves free; returns the cap.

        Raises:
            OSError: the limit leaves no room for a single connection (EMFILE, with what to do).
        """
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.cap
        try:
            used = len(os.listdir("/proc/self/fd"))
        except OSError:  # no /proc: the headroom has to cover what is open
            used = 0
        room = soft - used - FD_HEADROOM + len(self._open)
        if room < 1:
            raise OSError(
                errno.EMFILE,
                f"the open-file limit ({soft}) leaves no room for connections: raise it "
                f"(ulimit -n, or LimitNOFILE= under systemd) to at least {used + FD_HEADROOM + 16}",
            )
        self.cap = min(self.limits.max_connections, room)
        return self.cap

    def admit(self, conn: Guarded) -> bool:
        """Take a new connection: room under the cap, made by closing the longest idle, or refused."""
        if len(self._open) >= self.cap:
            if not self._idle:
                self.refused += 1
                self._log()
                return False
            oldest = next(iter(self._idle))
            self.evicted += 1
            self._close(oldest)
            self._log()
        self._open.add(conn)
        assert conn.transport is not None
        self._by_transport[conn.transport] = conn
        self._ready(conn)
        return True

    def forget(self, conn: Guarded) -> None:
        """A connection closed (by either side)."""
        self._drop(conn)

    # -- requests ------------------------------------------------------------------------------

    def connection_of(self, transport: asyncio.BaseTransport | None) -> Guarded | None:
        """The admitted connection of `transport` (None: not one of this guard's, or closed)."""
        return self._by_transport.get(transport) if transport is not None else None

    def request_started(self, conn: Guarded) -> None:
        """A request of `conn` is being answered: it is busy, not idle (no timer, never evicted)."""
        self._busy(conn)

    def request_done(self, conn: Guarded) -> None:
        """`conn` answered its request and waits for the next one (idle again, its timer restarted)."""
        if conn in self._open:
            self._ready(conn)

    # -- timers and bookkeeping ----------------------------------------------------------------

    def arm(self, conn: Guarded, seconds: float) -> None:
        """(Re)start the connection's timer: closed in `seconds` unless a request starts first."""
        if conn.timer is not None:
            conn.timer.cancel()
        conn.timer = asyncio.get_running_loop().call_later(seconds, self._expire, conn)

    def _expire(self, conn: Guarded) -> None:
        conn.timer = None
        if conn in self._open and not conn.busy:
            self.timed_out += 1
            self._close(conn)

    def _ready(self, conn: Guarded) -> None:
        """Idle: waiting for its next request (at the back of the eviction order)."""
        conn.busy = conn.heard = False
        self._idle[conn] = None
        self._idle.move_to_end(conn)
        self.arm(conn, self.limits.idle_timeout_s)

    def _busy(self, conn: Guarded) -> None:
        conn.busy = True
        self._idle.pop(conn, None)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def _close(self, conn: Guarded) -> None:
        self._drop(conn)
        if conn.transport is not None:
            conn.transport.close()

    def _drop(self, conn: Guarded) -> None:
        self._open.discard(conn)
        self._idle.pop(conn, None)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def _log(self) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning(
                "connection limit %d reached: %d idle connections closed, %d refused so far",
                self.cap,
                self.evicted,
                self.refused,
            )

    @property
    def open_connections(self) -> int:
        """Connections admitted and not closed."""
        return len(self._open)


async def serve_guarded(
    guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol], sock: socket.socket
) -> asyncio.Server:
    """Serve a bound listening socket, each connection a `factory()` protocol behind the guard.

    Raises:
        OSError: the open-file limit leaves no room for connections.
    """
    guard.fit_to_fd_limit()
    return await asyncio.get_running_loop().create_server(
        lambda: Guarded(guard, factory), sock=sock, backlog=ACCEPT_BACKLOG
    )
