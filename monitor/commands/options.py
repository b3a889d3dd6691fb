"""Options several subcommands share, defined once: the store and its $MONITOR_STORE default, the time window,
durations and the sim scenario, each with one help text and one UserError line for a bad value."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.errors import UserError

if TYPE_CHECKING:
    from monitor.timespec import Window

STORE_ENV = "MONITOR_STORE"
TRAY_INDEX_BASE_ENV = "MONITOR_TRAY_INDEX_BASE"
STORE_HELP = f"Store directory (or ${STORE_ENV})."

StoreOption = Annotated[Path | None, typer.Option("--store", help=STORE_HELP)]
"""`--store DIR` of the commands that read or write a store; resolve it with resolve_store()."""
LastOption = Annotated[
    str | None,
    typer.Option(
        "--last",
        help="The last D of the store, counted back from its newest row (not from now), e.g. 30m. "
        "Without --last or --since: the whole store (an export bundle's own window).",
    ),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Window start: ISO 8601 with a zone, now-2h, 2h.")
]
UntilOption = Annotated[str | None, typer.Option("--until", help="Window end (default: now).")]
TrayIndexBaseOption = Annotated[
    int,
    typer.Option(
        "--tray-index-base",
        envvar=TRAY_INDEX_BASE_ENV,
        help="What NVML's platform trayIndex reads for compute tray 1: 0 (default) or 1; see "
        "docs/hardware-checks.md.",
    ),
]
"""`--tray-index-base` (or $MONITOR_TRAY_INDEX_BASE) of the commands that place local GPUs; check it with
check_tray_index_base()."""


def count(n: int, noun: str) -> str:
    """'1 tray', '18 trays': a count with its noun in the singular or plural (nouns that take an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def resolve_store(store: Path | None, *, how: str = "--store DIR") -> Path:
    """The store directory given, else $MONITOR_STORE, else a UserError saying how to give one.

    Args:
        store: the directory the user named, if any.
        how: how this command takes a store, for the message ('--store DIR', or PATH for replay).
    """
    if store is None:
        env = os.environ.get(STORE_ENV)
        if not env:
            raise UserError(f"no store given: pass {how} or set {STORE_ENV}")
        store = Path(env)
    return store.expanduser()


def stored_window(root: Path, last: str | None, since: str | None, until: str | None) -> Window:
    """The window of a command that reads the recorded store at `root` (monitor.timespec.store_window):
    the whole store by default, `--last` counted back from its newest row; errors as one UserError."""
    from monitor.report import stored_span
    from monitor.timespec import store_window
    from storage.layout import StoreError
    from storage.reader import StoreReader

    try:
        with StoreReader(root) as reader:
            held = stored_span(reader)
        return store_window(last, since, until, held)
    except StoreError as err:
        raise UserError(str(err)) from None
    except ValueError as err:
        raise UserError(str(err)) from None


def seconds(text: str, flag: str) -> float:
    """Seconds in the duration `text` given to `flag` ('500ms', '10s', '24h'), a bad one as a UserError."""
    from monitor.timespec import parse_duration

    try:
        return parse_duration(text, flag)
    except ValueError as err:
        raise UserError(str(err)) from None


def check_tray_index_base(base: int) -> int:
    """`base` if it is 0 or 1, else a UserError naming the option and the environment variable."""
    from collectors.rack import TRAY_INDEX_BASES

    if base not in TRAY_INDEX_BASES:
        raise UserError(f"--tray-index-base (or ${TRAY_INDEX_BASE_ENV}) must be 0 or 1, not {base}")
    return base


def check_scenario(scenario: str) -> None:
    """A UserError naming the known scenarios unless `scenario` is one (or if this build has no simulator)."""
    try:
        from collectors.sim import SCENARIOS
    except ImportError as err:
        raise UserError(f"the simulator is not available in this build ({err})") from None
    if scenario not in SCENARIOS:
        raise UserError(f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}")


def sim_listen(engine: str, speed: float, listen: str) -> tuple[str, int]:
    """Check `monitor sim`'s --engine, --speed and --listen (one rack or many); (host, port, 0 = any)."""
    from collectors.agent_server import parse_listen
    from collectors.sim.pages import ENGINES

    if engine not in ENGINES:
        raise UserError(f"--engine {engine!r}: the simulator serves {', '.join(ENGINES)}")
    if speed <= 0:
        raise UserError("--speed must be positive")
    try:
        return parse_listen(listen, default_port=0)
    except ValueError as err:
        raise UserError(f"--listen: {err}") from None
