"""The `monitor` command line (typer). Textual is imported only by the commands that draw a TUI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from collectors.rack import TRAY_INDEX_BASE
from monitor.commands import agent, collect, demo, doctor, import_promql, query, sim
from monitor.commands import export as export_cmd
from monitor.commands import replay as replay_cmd
from monitor.commands import report as report_cmd
from monitor.commands import snapshot as snapshot_cmd
from monitor.commands.local_nvml import TrayOption
from monitor.commands.options import TrayIndexBaseOption
from monitor.errors import UserError
from monitor.malloc_arenas import limit_malloc_arenas
from monitor.terminal import COLOR_HELP, MAX_FPS_HELP, RECORD_HELP, apply_terminal_options

app = typer.Typer(
    name="monitor",
    help="Terminal telemetry monitor for rack-scale LLM inference (GB300 NVL72).",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: a flag is listed bare ("--sim"), where typer's rich panels print "--sim <bool>"
    # as if it took a value (and then `--sim true` is rejected).
    rich_markup_mode=None,
)

# Subcommands register here, two lines each (import, register); each module lives in monitor/commands/.
app.command("collect")(collect.command)
app.command("demo")(demo.command)
app.command("query")(query.command)
app.command("sim")(sim.command)
app.command("export")(export_cmd.command)
app.command("report")(report_cmd.command)
app.command("snapshot")(snapshot_cmd.command)
app.command("agent")(agent.command)
app.command("doctor")(doctor.command)
app.command("replay")(replay_cmd.command)
app.command("import")(import_promql.command)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="Rack config (TOML): the TUI on that rack over HTTP.")
    ] = None,
    interval: float = typer.Option(1.0, "--interval", help="Seconds between samples (and redraws)."),
    store: Annotated[Path | None, typer.Option("--store", help=RECORD_HELP)] = None,
    color: str = typer.Option("auto", "--color", help=COLOR_HELP),
    max_fps: int | None = typer.Option(None, "--max-fps", help=MAX_FPS_HELP),
    tray: TrayOption = None,
    tray_index_base: TrayIndexBaseOption = TRAY_INDEX_BASE,
) -> None:
    """The TUI on a rack (--config), or on this host's GPUs through NVML; subcommands below."""
    if ctx.invoked_subcommand is None:
        from monitor.commands import root as root_cmd

        apply_terminal_options(color, max_fps)
        root_cmd.run(config, interval, store, tray=tray, tray_index_base=tray_index_base)


def main() -> None:
    """Console-script entry point: run the CLI, turning UserError into one line on stderr."""
    limit_malloc_arenas()  # before any thread starts
    try:
        app()
    except UserError as err:
        print(f"monitor: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
