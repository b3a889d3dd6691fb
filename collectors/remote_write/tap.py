"""The recording's newest sealed segments, kept in memory for the sender: what the writer has just put on
disk, so that a sender keeping up with the recording encodes it without reading it back.

The store stays the durable queue (collectors.remote_write.sender): the tap only answers for a position
inside one of the last `keep` seals it holds, and only with that seal's ticks; anywhere else (a backlog
older than the tap, a seal it could not hold) the sender reads the store as before. Every row the store
holds in a seal's (after_ms, through_ms] is in that seal's tables (the writer admits only rows newer
than what is sealed, and every seal publishes all it buffered), so the rows given for (position, hi]
are the rows the store holds there, in the order the sender's query sorts them. A seal that spans two
hours (a segment per hour, each sorted on its own) or holds a row outside its range is not held.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from collectors.remote_write.series import ORDER_BY
from storage.schemas import SORT_KEYS, TABLES, TS
from storage.writer import Sealed

KEEP_SEALS = 2
"""Seals held at most (a rack's seal at the default 10 s flush is ~4.8 MiB of Arrow, most of it histogram
rows); a seal is let go once it is sent, so a tap whose sender keeps up holds one for a few seconds
after each seal and none the rest of the time."""
TICK_TABLES = ("gpu", "serving", "host")
"""Every recorded tick has a row in one of these (the collecting host's row at least)."""
RESORTED = tuple(t for t, order in ORDER_BY.items() if tuple(order.split(", ")) != (*SORT_KEYS[t], "ts"))
"""Tables whose segment order (SORT_KEYS, ts) is not the sender's ORDER_BY: sorted again when taken."""


@dataclass(frozen=True)
class _Held:
    """One seal's rows of the tables sent, and its ticks (the times of its tick tables' rows)."""

    after_ms: int | None
    through_ms: int
    tables: dict[str, pa.Table]
    ticks: list[int]
    newest_ms: int
    """The newest row's time in any table."""


class SealedTap:
    """A seal listener (storage.writer.StoreWriter.seal_listeners) that keeps the last seals' tables.

    Args:
        tables: the tables the sender sends.
        through_ms: the store's sealed-through time when the tap is attached (None: nothing sealed).
        keep: seals held at most.
    """

    def __init__(self, tables: tuple[str, ...], through_ms: int | None, keep: int = KEEP_SEALS) -> None:
        """Nothing held until the first seal."""
        self.tables = tables
        self.keep = keep
        self.on_seal: Callable[[], None] | None = None
        """Called after each seal (the sender's `wake`: the seal is sent now, not at the next look)."""
        self._through = through_ms
        self._held: deque[_Held] = deque()
        self._lock = threading.Lock()

    def __call__(self, sealed: Sealed) -> None:
        """Hold one seal (called by the writer, in the recording's thread)."""
        held = _hold(sealed, self.tables)
        with self._lock:
            self._through = sealed.through_ms
            if held is not None:
                self._held.append(held)
                while len(self._held) > self.keep:
                    self._held.popleft()
        if self.on_seal is not None:
            self.on_seal()

    @property
    def held_seals(self) -> int:
        """Seals held now."""
        with self._lock:
            return len(self._held)

    def caught_up(self, position: int) -> bool:
        """True when every sealed tick is at or before `position`: nothing to read."""
        with self._lock:
            return self._through is not None and position >= self._through

    def take(self, position: int, ticks: int) -> tuple[int, dict[str, pa.Table]] | None:
        """The next `ticks` ticks after `position` (fewer where the seal holding them ends first) as
        (the last tick's time, each table's rows in ORDER_BY order); None when the tap does not hold
        the rows after `position` whole (the store has to be read)."""
        with self._lock:
            while self._held and self._held[0].through_ms <= position:
                self._held.popleft()  # sent: only a sender behind the recording needs more than one
            held = next((h for h in self._held if _covers(h, position)), None)
        if held is None:
            return None
        after = [t for t in held.ticks if t > position]
        if not after:
            return None
        hi = after[min(ticks, len(after)) - 1]
        whole = held.after_ms is not None and position == held.after_ms and hi >= held.newest_ms
        tables = {}
        for name, table in held.tables.items():
            if not whole:
                ts = table.column("ts").cast(TS).cast(pa.int64())
                window = pc.and_(
                    pc.greater(ts, pa.scalar(position, pa.int64())),
                    pc.less_equal(ts, pa.scalar(hi, pa.int64())),
                )
                table = table.filter(window)
            if name in RESORTED and table.num_rows > 1:
                table = table.sort_by([(c, "ascending") for c in ORDER_BY[name].split(", ")])
            tables[name] = table
        return hi, tables


def _covers(held: _Held, position: int) -> bool:
    return (held.after_ms is None or held.after_ms <= position) and position < held.through_ms


def _hold(sealed: Sealed, names: tuple[str, ...]) -> _Held | None:
    """A seal as the tap holds it; None when it cannot stand for the store's rows of its time range:
    a table in more than one segment (the seal spanned two hours: each segment is sorted on its own)
    or a row outside (after_ms, through_ms]."""
    tables: dict[str, pa.Table] = {}
    stamps: set[int] = set()
    newest = sealed.after_ms or 0
    for name in {*names, *TICK_TABLES}:
        parts = sealed.tables.get(name, [])
        if len(parts) > 1:
            return None
        table = parts[0] if parts else TABLES[name].empty_table()
        if table.num_rows:
            ts = table.column("ts").cast(TS).cast(pa.int64())
            bounds = pc.min_max(ts)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            if high > sealed.through_ms or (sealed.after_ms is not None and low <= sealed.after_ms):
                return None
            newest = max(newest, high)
            if name in TICK_TABLES:
                stamps.update(pc.unique(ts).to_pylist())
        if name in names:
            tables[name] = table
    return _Held(sealed.after_ms, sealed.through_ms, tables, sorted(stamps), newest)
