"""A dropped SSH connection ends the app cleanly: SIGHUP exits it, and a cheap periodic check notices a
terminal that went away without a signal (charles-001/dolphie#101: a monitor left spinning a core)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from textual.app import App

CHECK_S = 2.0
"""Seconds between terminal checks (an isatty per check: nothing measurable)."""


def terminal_gone(fds: tuple[int, ...]) -> bool:
    """Whether any of `fds` is no longer a terminal (a hung-up tty fails isatty, a closed fd raises)."""
    for fd in fds:
        try:
            if not os.isatty(fd):
                return True
        except OSError:
            return True
    return False


def watch_hangup(app: App[object], check_s: float = CHECK_S) -> None:
    """Exit `app` on SIGHUP or when its terminal goes away; does nothing for a headless (test) app."""
    if app.is_headless:
        return
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, app.exit)
    fds = tuple(fd for fd in (0, 1) if _isatty(fd))
    if fds:

        def check() -> None:
            if terminal_gone(fds):
                app.exit()

        app.set_interval(check_s, check, name="hangup-check")


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
