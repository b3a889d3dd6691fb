"""A progress bar on stderr for the long commands (export, report): only on a terminal, only after a second.

A command that answers within a second shows nothing; one that takes longer draws a single line,
redrawn in place a few times a second by a daemon thread (so a long step with no progress still shows
the time passing), and erased when the command ends so its own output starts on a clean line. When
stderr is not a terminal (a pipe, a file, a cron job's log) nothing is ever written: logs stay clean.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

DELAY_ENV = "MONITOR_PROGRESS_DELAY_S"
"""Seconds before the bar appears (default 1); tests set 0 to see it on a quick command."""
DEFAULT_DELAY_S = 1.0
REDRAW_S = 0.2
WIDTH = 24


def _delay() -> float:
    try:
        return max(0.0, float(os.environ.get(DELAY_ENV, DEFAULT_DELAY_S)))
    except ValueError:
        return DEFAULT_DELAY_S


class Progress:
    """Work done out of a total, drawn on `stream` once the work has lasted `delay_s`.

    Args:
        label: what is being done ("export", "report").
        total: units of work (any unit: bytes, steps); may grow with add_total().
        stream: where to draw (default: sys.stderr); nothing is drawn unless it is a terminal.
        delay_s: seconds before the first drawing (default: $MONITOR_PROGRESS_DELAY_S or 1).

    Use as a context manager; advance() and step() are safe from any thread.
    """

    def __init__(
        self, label: str, total: int = 0, *, stream: TextIO | None = None, delay_s: float | None = None
    ) -> None:
        """Start the clock; the drawing thread starts only on a terminal."""
        self.label = label
        self._stream = stream if stream is not None else sys.stderr
        self._delay = _delay() if delay_s is None else delay_s
        self._total, self._done, self._what = max(0, total), 0, ""
        self._began = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._drawn = False
        self._thread: threading.Thread | None = None
        if _is_terminal(self._stream):
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()

    @property
    def active(self) -> bool:
        """Whether a bar may be drawn (stderr is a terminal)."""
        return self._thread is not None

    def add_total(self, units: int) -> None:
        """More work became known."""
        with self._lock:
            self._total += max(0, units)

    def advance(self, units: int = 1, what: str | None = None) -> None:
        """`units` more are done; `what` names the step now running."""
        with self._lock:
            self._done = min(self._total, self._done + max(0, units)) if self._total else self._done
            if what is not None:
                self._what = what

    def step(self, what: str) -> None:
        """Name the step now running without counting work."""
        self.advance(0, what)

    def _run(self) -> None:
        if self._stop.wait(max(0.0, self._delay - (time.monotonic() - self._began))):
            return
        while True:
            self._draw()
            if self._stop.wait(REDRAW_S):
                return

    def line(self) -> str:
        """The bar as drawn now: label, bar, percent, elapsed seconds and the current step."""
        with self._lock:
            share = self._done / self._total if self._total else 0.0
            what = self._what
        elapsed = time.monotonic() - self._began
        if not self._total:  # nothing to count yet: the time and the step say it is working
            return f"{self.label} {elapsed:5.1f} s {what}".rstrip()
        filled = round(share * WIDTH)
        bar = "#" * filled + "-" * (WIDTH - filled)
        return f"{self.label} [{bar}] {share:4.0%} {elapsed:5.1f} s {what}".rstrip()

    def _draw(self) -> None:
        try:
            self._stream.write("\r\x1b[K" + self.line())
            self._stream.flush()
            self._drawn = True
        except (OSError, ValueError):
            self._stop.set()  # the terminal went away: stop drawing, never fail the command

    def close(self) -> None:
        """Stop drawing and erase the bar (if one was drawn)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self._drawn:
                try:
                    self._stream.write("\r\x1b[K")
                    self._stream.flush()
                except (OSError, ValueError):
                    pass

    def __enter__(self) -> Progress:
        """Use as a context manager; close() on exit."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Erase the bar."""
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
