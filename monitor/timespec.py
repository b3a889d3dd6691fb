"""Times on the command line: ISO 8601 with a zone, 'now', 'now-2h' and plain durations ('2h' = 2 h ago)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_RELATIVE = re.compile(r"^\s*now\s*(?:-\s*(\S+))?\s*$", re.IGNORECASE)
ACCEPTED = "ISO 8601 with a zone (2025-06-01T10:00:00Z), 'now', 'now-2h', or a duration ago ('2h')"


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in '500ms', '1s', '10m', '24h', '7d' (a bare number is seconds).

    Raises:
        ValueError: with a one-line message naming `what` and the accepted forms.
    """
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"bad {what} {text!r}: use a positive number with ms, s, m, h or d (e.g. 10s, 24h)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class Window:
    """A closed time window [since_ms, until_ms] in epoch milliseconds."""

    since_ms: int
    until_ms: int
    how: str = ""
    """What the window is in words when it was not given as two instants ('the whole store',
    'last 30m of the store, ending 2025-06-15T15:06:40Z'); empty otherwise."""

    @property
    def seconds(self) -> float:
        """The window's length in seconds."""
        return (self.until_ms - self.since_ms) / 1000


def parse_instant(text: str, what: str, now_s: float | None = None) -> int:
    """Epoch ms of `text` (see ACCEPTED); ValueError with one line naming `what` otherwise.

    Args:
        text: the user's time.
        what: the option it came from, for the message ('--since').
        now_s: epoch seconds taken as 'now' (the wall clock by default).
    """
    now = time.time() if now_s is None else now_s
    relative = _RELATIVE.match(text)
    if relative:
        ago = relative.group(1)
        return round((now - (_duration(ago, what, text) if ago else 0.0)) * 1000)
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d)\s*", text):
        return round((now - _duration(text, what, text)) * 1000)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"bad {what} {text!r}: use {ACCEPTED}") from None
    if when.tzinfo is None:
        # A zoneless time means different instants on different hosts; post-mortems cross hosts.
        raise ValueError(f"bad {what} {text!r}: give a zone (append Z for UTC, or +02:00)")
    return round(when.timestamp() * 1000)


def _duration(text: str, what: str, whole: str) -> float:
    try:
        return parse_duration(text, what)
    except ValueError:
        raise ValueError(f"bad {what} {whole!r}: use {ACCEPTED}") from None


def parse_window(
    last: str | None, since: str | None, until: str | None, now_s: float | None = None
) -> Window:
    """The window of `--last D` or `--since T [--until T]` (until defaults to now).

    Raises:
        ValueError: both or neither given, a bad time, or an empty or reversed window (one line).
    """
    now = time.time() if now_s is None else now_s
    if last is not None and (since is not None or until is not None):
        raise ValueError("give either --last D or --since T [--until T], not both")
    if last is not None:
        seconds = parse_duration(last, "--last")
        return Window(round((now - seconds) * 1000), round(now * 1000))
    if since is None:
        if until is not None:
            raise ValueError("--until needs --since (or use --last D)")
        raise ValueError("no window given: pass --last D (e.g. --last 1h) or --since T [--until T]")
    lo = parse_instant(since, "--since", now)
    hi = parse_instant(until, "--until", now) if until is not None else round(now * 1000)
    if hi <= lo:
        raise ValueError(f"--since {since} is not before --until {until or 'now'}")
    return Window(lo, hi)


def store_window(
    last: str | None,
    since: str | None,
    until: str | None,
    held: tuple[int, int] | None,
    now_s: float | None = None,
) -> Window:
    """The window of a command that reads a recorded store, whose data spans `held` (first, last ms).

    No option: the whole store (an export bundle's own window). `--last D`: the last D of the store,
    counted back from its newest row, not from now: a store that ended a minute (or a month) ago still
    shows the D before its end. `--since T [--until T]`: as parse_window.

    Raises:
        ValueError: as parse_window; or no option and nothing stored (one line).
    """
    if since is not None or until is not None:
        return parse_window(last, since, until, now_s)
    if held is None:
        if last is None:
            raise ValueError("no window given, and the store holds no GPU or serving rows to take one from")
        return parse_window(last, None, None, now_s)
    if last is None:
        return Window(held[0], held[1], "the whole store")
    seconds = parse_duration(last, "--last")
    end = held[1]
    return Window(end - round(seconds * 1000), end, f"last {last.strip()} of the store, ending {iso(end)}")


def iso(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC with a Z, to the second ('2025-06-01T10:00:00Z')."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
