"""The head: the newest frames, in memory, shared by the collector thread and every live reader."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Sequence

import pyarrow as pa

from storage.frame import Frame
from storage.schemas import TABLES


class Head:
    """A bounded, thread-safe ring of the newest frames.

    One collector thread appends; any number of readers (the TUI's worker, the store writer) read
    without blocking it for longer than a list copy. `version` increases by one per append, so a
    reader can tell cheaply whether anything changed since it last looked.
    """

    def __init__(self, capacity: int = 600) -> None:
        """Keep at most `capacity` frames (600 = 10 minutes at 1 Hz)."""
        if capacity < 2:
            raise ValueError("a head needs room for at least two frames (rates need two samples)")
        self._frames: deque[Frame] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0

    @property
    def capacity(self) -> int:
        """The most frames this head keeps."""
        return self._frames.maxlen or 0

    @property
    def version(self) -> int:
        """How many frames were ever appended."""
        return self._version

    def append(self, frame: Frame) -> None:
        """Add the newest frame; frames must arrive in time order."""
        with self._changed:
            if self._frames and frame.ts_ms < self._frames[-1].ts_ms:
                raise ValueError(
                    f"frame at {frame.ts_ms} is older than the head's newest ({self._frames[-1].ts_ms})"
                )
            self._frames.append(frame)
            self._version += 1
            self._changed.notify_all()

    def replace(self, frames: Sequence[Frame]) -> None:
        """Swap every frame for `frames` (oldest first), as a replay seek does; the version still grows."""
        if any(b.ts_ms < a.ts_ms for a, b in itertools.pairwise(frames)):
            raise ValueError("frames must be in time order")
        with self._changed:
            self._frames.clear()
            self._frames.extend(frames)
            self._version += 1
            self._changed.notify_all()

    def wait_for(self, version: int, timeout: float) -> int:
        """Block until the head is past `version` or `timeout` seconds pass; return the version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version > version, timeout=timeout)
            return self._version

    def latest(self, n: int = 1) -> list[Frame]:
        """The newest `n` frames, oldest first (fewer if the head holds fewer)."""
        with self._lock:
            if n >= len(self._frames):
                return list(self._frames)
            return list(self._frames)[-n:]

    def frames(self, since_ms: int | None = None) -> list[Frame]:
        """All frames, or those with ts_ms > since_ms, oldest first."""
        with self._lock:
            frames = list(self._frames)
        if since_ms is None:
            return frames
        return [f for f in frames if f.ts_ms > since_ms]

    def table(self, name: str, since_ms: int | None = None) -> pa.Table:
        """One table over the head's frames (optionally only those after since_ms)."""
        batches = [f.batches[name] for f in self.frames(since_ms) if name in f.batches]
        return pa.Table.from_batches(batches, schema=TABLES[name])
