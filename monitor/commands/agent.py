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
    from aiohttp import web

LISTEN_HELP = "Address to serve on: HOST:PORT, [IPV6]:PORT, or :PORT for every interface."


def command(
    listen: str = typer.Option("127.0.0.1:9401", "--listen", help=LISTEN_HELP),
    tray: TrayOption = None,
    tray_index_base: TrayIndexBaseOption = TRAY_INDEX_BASE,
) -> None:
    """Export this tray's GPUs on /metrics (dcgm-exporter names where they exist) for scrapers."""
    from collectors.agent_server import AgentPage, agent_app, parse_listen

    try:
        host, port = parse_listen(listen)
    except ValueError as err:
        raise UserError(f"--listen: {err}") from None
    why = ": `monitor agent` exports the GPUs of the host it runs on"
    collector = open_local(tray, tray_index_base, why=why)
    try:
        page = AgentPage(collector)
        asyncio.run(serve_app(agent_app(page), host, port, what=f"{len(page.gpus)} GPUs"))
    finally:
        collector.close()


async def serve_app(app: web.Application, host: str, port: int, *, what: str) -> None:
    """Serve an aiohttp app on (host, port) until SIGINT or SIGTERM.

    Raises:
        UserError: the address cannot be bound (taken, not local, no permission).
    """
    from aiohttp import web

    from collectors.agent_server import bind_socket

    try:
        sock = bind_socket(host, port)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"monitor agent: serving {what} on http://{shown}:{bound}/metrics", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


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
