"""The simulated rack's 90 servers in a child process, for tests that load the scraping side or the servers.

A child keeps the servers' work (and their file descriptors) out of the test process: the scraper's
figures are its own, and the servers can run under an open-file limit of their own (`nofile`).
Run as `python -m tests.net.sim_child CONFIG [--nofile N] [--idle S] [--header S] [--max-connections N]`:
it writes the rack config to CONFIG, prints "ready", and serves until its stdin closes. With `--agent`
it serves `monitor agent`'s own server (collectors.agent_http, no aiohttp) on simulated tray 1 instead,
and prints "ready HOST:PORT".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collectors.http_guard import ServerLimits

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    """Serve until stdin closes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--nofile", type=int, help="soft RLIMIT_NOFILE for this process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agent", action="store_true", help="the agent's server on tray 1, not the rack's")
    args, limit_args = parser.parse_known_args()
    if args.nofile is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    if args.agent:
        asyncio.run(_serve_agent(args.seed, **_limits(limit_args)))
        return
    from collectors.clock import SimClock
    from collectors.config import write_config
    from collectors.sim import SimRack
    from collectors.sim.http import SimServers

    rack = SimRack(seed=args.seed, clock=SimClock(start=time.time(), speed=1.0))
    with SimServers(rack, **_limits(limit_args)) as servers:
        assert servers.config is not None
        write_config(args.config, servers.config)
        print("ready", flush=True)
        sys.stdin.read()


async def _serve_agent(seed: int, limits: ServerLimits | None = None) -> None:
    """`monitor agent`'s server and page on simulated tray 1, until stdin closes."""
    from collectors.agent_http import serve_agent
    from collectors.agent_server import AgentPage, bind_socket
    from collectors.nvml import NvmlCollector
    from collectors.sim import SimRack

    collector = NvmlCollector(SimRack(seed=seed).tray_of(1), name="sim-tray01")
    sock = bind_socket("127.0.0.1", 0)
    server, _ = await serve_agent(AgentPage(collector, hostname="sim-tray01"), sock, limits)
    print(f"ready 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        server.close()
        collector.close()


def _limits(argv: list[str]) -> dict[str, Any]:
    """SimServers' `limits` from --idle, --header, --max-connections (none given: the defaults)."""
    if not argv:
        return {}
    from collectors.http_guard import ServerLimits

    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=ServerLimits.idle_timeout_s)
    parser.add_argument("--header", type=float, default=ServerLimits.header_timeout_s)
    parser.add_argument("--max-connections", type=int, default=ServerLimits.max_connections)
    args = parser.parse_args(argv)
    limits = ServerLimits(
        max_connections=args.max_connections, idle_timeout_s=args.idle, header_timeout_s=args.header
    )
    return {"limits": limits}


@contextlib.contextmanager
def _child(*args: str) -> Iterator[list[str]]:
    """Start the child with `args`; yields the words of its "ready" line; stops it (stdin closed) on exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "tests.net.sim_child", *args]
    child = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env=env, text=True
    )
    try:
        assert child.stdout is not None
        said = child.stdout.readline().split()
        assert said[:1] == ["ready"], f"the sim child did not start (exit {child.poll()})"
        yield said
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.contextmanager
def sim_in_child(tmp: Path, *args: str) -> Iterator[Path]:
    """Start the child with `args`; yields the path of its rack config; stops it on exit."""
    config = tmp / "rack.toml"
    with _child(str(config), *args):
        yield config


@contextlib.contextmanager
def agent_in_child(*args: str) -> Iterator[tuple[str, int]]:
    """The child in --agent mode with `args`; yields the agent's (host, port); stops it on exit."""
    with _child("-", "--agent", *args) as said:
        host, port = said[1].rsplit(":", 1)
        yield host, int(port)


if __name__ == "__main__":
    main()
