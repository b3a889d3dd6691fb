"""`monitor agent`: this tray's GPUs (local NVML) as a Prometheus /metrics page, plus /healthz."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import TYPE_CHECKING

import typer

from collectors.rack import TRAY_INDEX_BASE
from monitor.commands.local_nvml import TrayOption, open_local
from monitor.commands.options import TrayIndexBaseOption
from monitor.errors import UserError

if TYPE_CHECKING:
    from collectors.agent_server import AgentPage
    from collectors.http_guard import ServerLimits

LISTEN_HELP = (
    "Address to serve on: HOST:PORT, [IPV6]:PORT, or :PORT for every interface. The agent has no TLS "
    "and no auth: before listening beyond this host, see docs/agent-security.md."
)


def command(
    listen: str = typer.Option("127.0.0.1:9401", "--listen", help=LISTEN_HELP),
    tray: TrayOption = None,
    tray_index_base: TrayIndexBaseOption = TRAY_INDEX_BASE,
    max_connections: int = typer.Option(
        256,
        "--max-connections",
        help="Open connections at most (lowered to fit the open-file limit); past it the longest "
        "idle connection is closed.",
    ),
) -> None:
    """Export this tray's GPUs on /metrics (dcgm-exporter names where they exist) for scrapers."""
    from collectors.agent_server import AgentPage, parse_listen
    from collectors.http_guard import ServerLimits

    try:
        host, port = parse_listen(listen)
    except ValueError as err:
        raise UserError(f"--listen: {err}") from None
    if max_connections < 1:
        raise UserError(f"--max-connections {max_connections}: must be at least 1")
    limits = ServerLimits(max_connections=max_connections)
    why = ": `monitor agent` exports the GPUs of the host it runs on"
    collector = open_local(tray, tray_index_base, why=why)
    try:
        page = AgentPage(collector)
        asyncio.run(serve_agent_until_signal(page, host, port, limits=limits))
    finally:
        collector.close()


async def serve_agent_until_signal(
    page: AgentPage, host: str, port: int, *, limits: ServerLimits | None = None
) -> None:
    """Serve the agent on (host, port), within `limits` (collectors.http_guard), until SIGINT or SIGTERM.

    Raises:
        UserError: the address cannot be bound (taken, not local, no permission), or the open-file
            limit leaves no room for connections.
    """
    from collectors.agent_http import serve_agent
    from collectors.agent_server import bind_socket

    try:
        sock = bind_socket(host, port)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    try:
        server, guard = await serve_agent(page, sock, limits)
    except OSError as err:
        sock.close()
        raise UserError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None
    try:
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(
            f"monitor agent: serving {len(page.gpus)} GPUs on http://{shown}:{bound}/metrics "
            f"(at most {guard.cap} connections, idle ones closed after {guard.limits.idle_timeout_s:g} s)",
            file=sys.stderr,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        server.close()


def wait_for_signal() -> None:
    """Block the main thread until SIGINT or SIGTERM (for servers that run in background threads)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
