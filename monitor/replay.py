"""Replay: the store at a moving cursor. Frames are read back from a store around the cursor and fed
to a Head, so the TUI follows a replay exactly as it follows a live rack (see DESIGN.md, One data path).

No Textual here: ReplaySession is driven by the TUI's keys (requests return at once) and does its
reading on its own player thread, so a seek never blocks the event loop.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from monitor.timespec import iso, parse_duration
from monitor.view.serving import ServingBuilder
from storage.frame import Frame
from storage.reader import StoreReader
from storage.schemas import TABLES

SPEEDS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
"""Playback speeds, data seconds per real second; + and - move along this list."""
HISTORY_FRAMES = 121
"""Frames ending at the cursor that a seek loads: the snapshot builder's 120 s history plus one."""
CHUNK_FRAMES = 60
"""Frames read ahead at once while playing or stepping forward (one query per table)."""
KEEP_FRAMES = 600
"""The most frames kept in memory around the cursor (a step back inside them costs no query)."""
GAP_MS = 30_000
"""Playback jumps over a hole in the recording longer than this instead of waiting it out."""
HIST_TAIL_MS = 2 * ServingBuilder().window_ms
"""Serving histograms are read for this much of a seek's window (twice the serving view's window)."""
TICK_TABLES = ("gpu", "serving", "events")
"""Tables whose distinct times are the recording's ticks (every frame has rows in one of them)."""


class EmptyStoreError(Exception):
    """The store holds no frames to replay."""


def load_ticks(reader: StoreReader) -> list[int]:
    """Every tick time (epoch ms) in the store, oldest first."""
    parts = " UNION ".join(f"SELECT DISTINCT epoch_ms(ts) AS t FROM {t}" for t in TICK_TABLES)
    table = reader.sql(f"SELECT t FROM ({parts}) ORDER BY t")
    return [int(t) for t in table.column("t").to_pylist()]


class FrameLoader:
    """Reassembles Frames from a store: one query per table over a window, rows grouped by tick."""

    def __init__(self, reader: StoreReader) -> None:
        """Read from `reader`."""
        self.reader = reader

    def table(self, name: str, since_ms: int, until_ms: int) -> pa.Table:
        """One table's rows with since_ms <= ts <= until_ms in the store's schema, sorted by ts, entity."""
        rel = self.reader.relation(name, since_ms, until_ms)
        rows = self.reader.sql(f"SELECT * FROM {rel}")
        schema = TABLES[name]
        # DuckDB hands timestamps back in microseconds; the contract is the schema's milliseconds.
        rows = rows.select(schema.names).cast(schema)
        # Inside a row group rows are sorted by entity then ts (compacted files by time band first,
        # so one tick never spans row groups), and Arrow's sort is stable: sorting by ts alone
        # leaves each tick's rows in entity order, several times cheaper than sorting by every key.
        return rows.sort_by("ts").combine_chunks() if rows.num_rows > 1 else rows

    def frames(
        self, ticks: Sequence[int], *, skip: Sequence[str] = (), only: Sequence[str] | None = None
    ) -> list[Frame]:
        """The frames at `ticks` (sorted epoch ms, contiguous in the store), one per tick.

        Args:
            ticks: the ticks to read.
            skip: tables not to read.
            only: the tables to read (default: every table).
        """
        if not ticks:
            return []
        at = {t: i for i, t in enumerate(ticks)}
        batches: list[dict[str, pa.RecordBatch]] = [{} for _ in ticks]
        for name in TABLES if only is None else only:
            if name in skip:
                continue
            rows = self.table(name, ticks[0], ticks[-1])
            if not rows.num_rows:
                continue
            # Rows are sorted by ts, so each tick's rows are one run: slice them out without copying.
            runs = pc.run_end_encode(rows.column("ts").cast(pa.int64()).combine_chunks())
            start = 0
            for t, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist(), strict=True):
                i = at.get(t)
                if i is not None:
                    batches[i][name] = rows.slice(start, end - start).to_batches()[0]
                start = end
        return [Frame(ts_ms=int(t), batches=b) for t, b in zip(ticks, batches, strict=True)]


class ReplayCursor:
    """Cursor maths over a recording's ticks: positions are tick indices, moves are clamped to the range."""

    def __init__(self, ticks: Sequence[int]) -> None:
        """Move over `ticks` (sorted epoch ms, at least one)."""
        if not ticks:
            raise EmptyStoreError("no frames to replay")
        self.ticks = list(ticks)

    @property
    def last(self) -> int:
        """The index of the newest tick."""
        return len(self.ticks) - 1

    def index_at(self, ms: int | float) -> int:
        """The index of the newest tick at or before `ms` (the first tick when `ms` is before it)."""
        return max(0, bisect.bisect_right(self.ticks, ms) - 1)

    def step(self, index: int, n: int) -> int:
        """`n` ticks from `index`, clamped to the recording."""
        return min(self.last, max(0, index + n))

    def seek_by(self, index: int, delta_ms: int) -> int:
        """The tick `delta_ms` away from tick `index`; a forward seek moves at least one tick."""
        target = self.index_at(self.ticks[index] + delta_ms)
        if delta_ms > 0 and target <= index:
            target = self.step(index, 1)
        return target


@dataclass(frozen=True)
class ReplayState:
    """What the replay bar shows.

    Attributes:
        cursor_ms: the cursor's tick (the one asked for, while it is still loading).
        first_ms: the recording's first tick.
        last_ms: the recording's last tick.
        speed: data seconds per real second.
        playing: whether the cursor advances by itself.
        loading: a seek was asked for and its frames are being read.
        error: the last read error, one line (the replay pauses on it).
    """

    cursor_ms: int
    first_ms: int
    last_ms: int
    speed: float
    playing: bool
    loading: bool = False
    error: str | None = None

    @property
    def fraction(self) -> float:
        """How far through the recording the cursor is, 0..1."""
        span = self.last_ms - self.first_ms
        return (self.cursor_ms - self.first_ms) / span if span > 0 else 1.0


def speed_label(speed: float) -> str:
    """'0.25x', '1x', '16x'."""
    return f"{speed:g}x"


_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?Z?$", re.IGNORECASE)
GOTO_FORMS = "HH:MM[:SS] (UTC, the cursor's day), ISO 8601 with a zone, +/-D (e.g. -90s, +5m), start or end"


def parse_goto(text: str, state: ReplayState) -> int:
    """The epoch ms a 'go to' answer names, inside the recording.

    Raises:
        ValueError: one line: the form is not understood, or the time is outside the recording.
    """
    answer = text.strip()
    word = answer.lower()
    if word in ("start", "first", "begin"):
        return state.first_ms
    if word in ("end", "last"):
        return state.last_ms
    if answer[:1] in "+-" and answer:
        try:
            seconds = parse_duration(answer[1:], "offset")
        except ValueError:
            raise ValueError(f"bad offset {answer!r}: use e.g. +10s, -5m, +1h") from None
        when = state.cursor_ms + round(seconds * 1000) * (1 if answer[0] == "+" else -1)
    elif clock := _CLOCK.match(answer):
        hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"bad time {answer!r}: use {GOTO_FORMS}")
        day = datetime.fromtimestamp(state.cursor_ms / 1000, tz=UTC).replace(hour=0, minute=0, second=0)
        when = round((day + timedelta(hours=hour, minutes=minute, seconds=second)).timestamp() * 1000)
    else:
        try:
            parsed = datetime.fromisoformat(answer)
        except ValueError:
            raise ValueError(f"bad time {answer!r}: use {GOTO_FORMS}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"bad time {answer!r}: give a zone (append Z for UTC)")
        when = round(parsed.timestamp() * 1000)
    if not state.first_ms <= when <= state.last_ms:
        raise ValueError(
            f"{iso(when)} is outside the recording ({iso(state.first_ms)} to {iso(state.last_ms)})"
        )
    return when
