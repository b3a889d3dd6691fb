"""`monitor doctor`: what works here: NVML on this host, each endpoint of a rack config, terminal colours."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from monitor.errors import UserError


def command(
    config: Annotated[Path | None, typer.Option("--config", help="Rack config (TOML) to check.")] = None,
) -> None:
    """Check NVML here, every endpoint of --config (ok + latency + engine, stale, or why not), and colours."""
    from storage.schemas import EndpointState

    lines = [nvml_line(), terminal_line()]
    failed = 0
    if config is None:
        for line in lines:
            typer.echo(line)
        if lines[0].startswith("NVML: not available"):
            raise UserError("no NVIDIA driver here and no --config to check: nothing to monitor", exit_code=1)
        return
    from monitor.commands.root import MAX_TIMEOUT_TICKS, load_rack_config, scrape_source

    rack = load_rack_config(config)
    source = scrape_source(rack, interval=max(1.0, rack.timeout_for(1.0) / MAX_TIMEOUT_TICKS))
    try:
        source.poll(round(time.time() * 1000))
        statuses = source.statuses()
    finally:
        source.close()
    configured = {s.name: s.engine for s in rack.servers}
    lines.append(f"rack {rack.name} ({config}): {len(rack.trays)} trays, {len(rack.servers)} servers")
    width = max((len(s.name) for s in statuses), default=0)
    for status in statuses:
        lines.append(
            f"  {status.kind:<6} {status.name:<{width}}  {status.url}  {_verdict(status, configured)}"
        )
        if status.state != EndpointState.OK:
            failed += 1
    answering = len(statuses) - failed
    lines.append(f"{answering} of {len(statuses)} endpoints answer")
    for line in lines:
        typer.echo(line)
    if failed:
        raise UserError(f"{failed} of {len(statuses)} endpoints in {config} do not answer", exit_code=1)


def _verdict(status: Any, configured: dict[str, str | None]) -> str:
    """ok + latency (+ engine), stale, or the error."""
    from storage.schemas import EndpointState

    if status.state == EndpointState.OK:
        text = f"ok {status.latency_s * 1000:.1f} ms"
        if status.kind == "server":
            how = "configured" if configured.get(status.name) else "detected"
            text += f", engine {status.engine} ({how})"
        if status.reason:  # the page answered but lacked or repeated series (see the serving mapping)
            text += f"; warning: {status.reason}"
        return text
    if status.state == EndpointState.STALE:
        return f"stale: {status.reason}"
    return f"error: {status.reason}"


def nvml_line() -> str:
    """NVML on this host: its GPUs and driver, or why not."""
    from collectors.nvml import nvml_available

    reason = nvml_available()
    if reason is not None:
        return f"NVML: not available ({reason})"
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            driver = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as err:
        return f"NVML: works, but {err}"
    return f"NVML: ok, {count} GPUs, driver {driver}"


def terminal_line() -> str:
    """The colours and size this terminal offers the TUI (what Rich, under Textual, detects)."""
    from rich.console import Console

    console = Console()
    size = shutil.get_terminal_size(fallback=(80, 24))
    env = ", ".join(f"{k}={os.environ[k]}" for k in ("TERM", "COLORTERM", "NO_COLOR") if k in os.environ)
    system = console.color_system
    if not console.is_terminal:
        colours = "not a terminal (the TUI needs one)"
    elif system is None:
        colours = "no colour (the TUI marks states with glyphs)"
    else:
        colours = {"truecolor": "24-bit colour", "256": "256 colours", "standard": "16 colours"}.get(
            system, system
        )
    return f"terminal: {colours}, {size.columns}x{size.lines}" + (f" ({env})" if env else "")
