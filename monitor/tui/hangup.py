"""A dropped terminal ends the TUI's process, whatever state Textual is in.

When an SSH session drops (or tmux goes), the pty hangs up: from then on every write to it fails with
EIO. Textual's output thread dies on its first such write (textual 8.2.8, drivers/_writer_thread.py:
nothing catches it), and its queue holds 30 writes: the 31st blocks whoever makes it, the event loop
included, and app.run() never returns. On a loaded 2-core machine a busy screen (the fleet demo at
--speed 10) queued that many before its exit in about 1 run in 20; the process then stayed, its pollers
scraping for good (charles-001/dolphie#101 is the same symptom in another TUI).

So a command runs its app with `run_until_hangup`, which watches for the terminal going away: SIGHUP
(a Python handler, which runs in the main thread even while that thread waits on a lock), or a terminal
that stops being one (checked every CHECK_S in a thread, so a wedged loop cannot stop the check). Then:

1. stdout and stderr are pointed at /dev/null, so later writes succeed and vanish: an output thread
   still alive drains its queue, and Textual's own shutdown runs as usual;
2. the app is asked to exit (`App.exit` posts a message, which is safe from another thread);
3. if the process has not ended GRACE_S later, the command's teardown (pollers stopped, recording
   sealed) runs in the watcher's thread, and the process ends with os._exit: nothing recorded is lost,
   and nothing lingers.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Protocol

CHECK_S = 2.0
"""Seconds between terminal checks (an isatty per check: nothing measurable)."""
GRACE_S = 5.0
"""Seconds the app gets to end by itself after its terminal went away (it takes 2-5 s on a loaded 2-core
machine: Textual's shutdown, then the pollers' and the store's)."""
TEARDOWN_S = 30.0
"""Seconds the guard waits for a teardown already running (pollers join their threads within 5 s each)."""

log = logging.getLogger(__name__)


class ExitableApp(Protocol):
    """What the guard needs of an app: Textual's App.run and App.exit."""

    def run(self) -> object: ...

    def exit(self) -> None: ...


class Teardown:
    """A command's cleanup after its app, run once: by the command as the app returns, or by the
    hang-up guard when the app cannot return. A second caller waits for the first to finish."""

    def __init__(self, *steps: Callable[[], object]) -> None:
        self._steps = steps
        self._lock = threading.Lock()
        self._done = False

    def __call__(self, wait_s: float = -1) -> None:
        """Run every step, unless they already ran; the first step's error is raised once all have run
        (a full disk sealing the recording is the command's one clear line and exit status).

        `wait_s`: how long to wait for another caller's run to finish (for ever by default); past it,
        return without running anything.
        """
        if not self._lock.acquire(timeout=wait_s):
            log.error("teardown still running after %g s: not waiting for it", wait_s)
            return
        try:
            if self._done:
                return
            self._done = True
            first: BaseException | None = None
            for step in self._steps:
                try:
                    step()
                except BaseException as err:  # the next step (sealing the recording) must still run
                    first = first or err
            if first is not None:
                raise first
        finally:
            self._lock.release()


def terminal_gone(fds: tuple[int, ...]) -> bool:
    """Whether any of `fds` is no longer a terminal (a hung-up tty fails isatty, a closed fd raises)."""
    for fd in fds:
        try:
            if not os.isatty(fd):
                return True
        except OSError:
            return True
    return False


def run_until_hangup(app: ExitableApp, teardown: Teardown) -> None:
    """`app.run()`, then `teardown()`; a terminal that goes away ends the process as well (module doc).

    Without a terminal (stdin and stdout both redirected) there is nothing to watch: the app just runs.
    """
    fds = tuple(fd for fd in (0, 1) if _isatty(fd))
    if not fds:
        try:
            app.run()
        finally:
            teardown()
        return
    guard = _HangupGuard(app, teardown, fds)
    previous = signal.signal(signal.SIGHUP, guard.on_sighup)  # commands run in the main thread
    guard.start()
    try:
        app.run()
    finally:
        try:
            teardown()
        finally:
            guard.app_returned()
            signal.signal(signal.SIGHUP, previous)


class _HangupGuard:
    """The watcher thread behind run_until_hangup."""

    def __init__(self, app: ExitableApp, teardown: Teardown, fds: tuple[int, ...]) -> None:
        self._app = app
        self._teardown = teardown
        self._fds = fds
        self._hung_up = threading.Event()
        self._returned = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hangup-guard", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def on_sighup(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: silence the dead terminal now (before Textual's next write meets it), wake the watcher."""
        _silence_terminal()
        self._hung_up.set()

    def app_returned(self) -> None:
        """app.run() returned and the teardown ran: a guard that saw no hang-up stops; one that did gives
        the interpreter's exit GRACE_S before it ends the process."""
        self._returned.set()

    def _watch(self) -> None:
        while not self._hung_up.wait(CHECK_S):
            if self._returned.is_set():
                return
            if terminal_gone(self._fds):
                _silence_terminal()
                self._hung_up.set()
        self._app.exit()
        if self._returned.wait(GRACE_S):
            time.sleep(GRACE_S)  # the interpreter's own exit, which ends this daemon thread with it
        try:
            self._teardown(wait_s=TEARDOWN_S)  # waits for the command's own teardown if that is running
        except BaseException:
            log.exception("teardown after the terminal went away failed")
            os._exit(1)
        os._exit(0)


def _silence_terminal() -> None:
    """Point stdout and stderr at /dev/null: writes to a hung-up pty fail (EIO), these succeed."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
