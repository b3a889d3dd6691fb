"""The head: the newest frames, in memory, shared by the collector thread and every live reader.

A thinning head (thinning_head(), the live client's) keeps what its readers use, at the age they use it
(ages in data time); a plain Head() keeps whole frames (a writer's own head, whose unsealed ticks a reader
may take however long they stay unsealed):
- the newest HIST_KEEP_MS of frames whole, serving histogram buckets included: the serving view's
  percentiles are over a 10 s window, and the store reader takes the head's rows after the last seal
  (every 10 s) from here;
- up to DETAIL_KEEP_MS, all but the serving histograms: the NVLink matrix and the rack view count
  link errors and link states over a 60 s window;
- older frames (up to `capacity`, 10 minutes at 1 Hz: the GPU detail's 5-minute charts, the events
  screen, the sparklines) keep the GPU, serving, process, host and event rows and the NVLink byte
  counters (rates need them), with the NVLink state and error columns null (shared null arrays).
The full buckets and error counters of every tick are in the store (monitor collect, --store).

The cost of one more tick of history is that of an old frame: for the GB300 NVL72 rack (72 GPUs,
1,296 links, 72 servers) 55-67 KB (gpu ~10 KB, nvlink byte counters ~35 KB, serving, processes and
events the rest), against ~500 KB for a whole frame (serving_hist alone ~400 KB): a full 10-minute head
is ~39 MB, not ~170 MB (bench/bench_soak.py --views, docs/benchmarks.md). tests/core/test_head_memory.py
bounds it by the rack's shape.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable, Sequence

import pyarrow as pa

from storage.frame import Frame
from storage.schemas import TABLES

HIST_KEEP_MS = 30_000
"""Frames this much older than the newest lose their serving_hist rows (views use the newest 10 s)."""
DETAIL_KEEP_MS = 90_000
"""Frames this much older than the newest lose their NVLink state and error columns (views use 60 s)."""
NVLINK_DETAIL = ("state", "rx_errors", "symbol_errors", "recovery", "recovery_failed")
"""The nvlink columns old frames hold as nulls (tx_kib and rx_kib stay: rates over 5 minutes)."""


class Head:
    """A bounded, thread-safe ring of the newest frames.

    One collector thread appends; any number of readers (the TUI's worker, the store writer) read
    without blocking it for longer than a list copy. `version` increases by one per append, so a
    reader can tell cheaply whether anything changed since it last looked.
    """

    def __init__(
        self, capacity: int = 600, *, hist_keep_ms: int | None = None, detail_keep_ms: int | None = None
    ) -> None:
        """Keep at most `capacity` frames (600 = 10 minutes at 1 Hz), thinned with age (module docstring).

        Args:
            capacity: the most frames kept.
            hist_keep_ms: frames older than this (behind the newest) lose their serving_hist rows; None
                keeps them (a writer's own head, read for every unsealed tick however long unsealed).
            detail_keep_ms: frames older than this lose their NVLink state and error columns; None keeps
                them. The live client passes HIST_KEEP_MS and DETAIL_KEEP_MS (thinning_head()).
        """
        if capacity < 2:
            raise ValueError("a head needs room for at least two frames (rates need two samples)")
        if (detail_keep_ms is None) != (hist_keep_ms is None):
            raise ValueError("give both keep windows or neither")
        if detail_keep_ms is not None and hist_keep_ms is not None and detail_keep_ms < hist_keep_ms:
            raise ValueError("detail_keep_ms must be at least hist_keep_ms")
        self._frames: deque[Frame] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._hist_keep_ms = hist_keep_ms
        self._detail_keep_ms = detail_keep_ms
        self._with_hist = 0
        """How many of the newest frames may still hold serving_hist rows."""
        self._with_detail = 0
        """How many of the newest frames may still hold NVLink state and error columns."""

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
            self._with_hist = min(self._with_hist + 1, len(self._frames))
            self._with_detail = min(self._with_detail + 1, len(self._frames))
            self._thin()
            self._version += 1
            self._changed.notify_all()

    def replace(self, frames: Sequence[Frame]) -> None:
        """Swap every frame for `frames` (oldest first), as a replay seek does; the version still grows."""
        if any(b.ts_ms < a.ts_ms for a, b in itertools.pairwise(frames)):
            raise ValueError("frames must be in time order")
        with self._changed:
            self._frames.clear()
            self._frames.extend(frames)
            self._with_hist = self._with_detail = len(self._frames)
            self._thin()
            self._version += 1
            self._changed.notify_all()

    def _thin(self) -> None:
        """Thin the frames that aged past hist_keep_ms / detail_keep_ms since the last append (lock held)."""
        if self._hist_keep_ms is None or self._detail_keep_ms is None:
            return
        frames = self._frames
        newest = frames[-1].ts_ms if frames else 0
        while self._with_detail and newest - frames[-self._with_detail].ts_ms > self._detail_keep_ms:
            at = len(frames) - self._with_detail
            frames[at] = frames[at].without(["serving_hist"], {"nvlink": NVLINK_DETAIL})
            self._with_detail -= 1
        self._with_hist = min(self._with_hist, self._with_detail)
        while self._with_hist and newest - frames[-self._with_hist].ts_ms > self._hist_keep_ms:
            at = len(frames) - self._with_hist
            frames[at] = frames[at].without(["serving_hist"])
            self._with_hist -= 1

    @property
    def nbytes(self) -> int:
        """Bytes of the Arrow buffers the head holds, each buffer counted once (shared ones too)."""
        with self._lock:
            frames = list(self._frames)
        return arrow_bytes(frames)

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


def arrow_bytes(frames: Iterable[Frame]) -> int:
    """Bytes of the Arrow buffers under `frames`, each buffer once (thinned frames share null columns)."""
    seen: dict[int, int] = {}
    for frame in frames:
        for batch in frame.batches.values():
            for column in batch.columns:
                for buffer in column.buffers():
                    if buffer is not None:
                        seen[buffer.address] = buffer.size
    return sum(seen.values())


def thinning_head(capacity: int = 600) -> Head:
    """A head that thins its frames with age (module docstring): the live client's and a replay's."""
    return Head(capacity, hist_keep_ms=HIST_KEEP_MS, detail_keep_ms=DETAIL_KEEP_MS)
