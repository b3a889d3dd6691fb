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

Every head also stores a column that did not change since the table's last batch once (share_columns):
ids, labels and histogram bucket bounds are the same arrays in every frame, not a copy a tick.

The cost of one more tick of history is what an old frame adds: for the GB300 NVL72 rack (72 GPUs, 1,296
links, 72 servers) ~39 KB, its timestamps and the columns that move (NVLink byte counters ~31 KB, GPU
gauges and counters ~3.5 KB, serving counters ~3.6 KB), against ~500 KB for a whole frame as it came
(serving_hist alone ~400 KB) and ~230 KB for a whole frame in the head (bucket bounds and labels shared):
a full 10-minute head is ~29 MB, not ~300 MB (bench/bench_soak.py --views, docs/benchmarks.md).
tests/core/test_head_memory.py counts it by hand from the rack's shape and the schema's widths.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

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
        self._newest_batches: dict[str, pa.RecordBatch] = {}
        """Each table's newest batch: a new frame's unchanged columns share its arrays (share_columns)."""

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
            frame = share_columns(frame, self._newest_batches)
            self._newest_batches.update(frame.batches)
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
            self._newest_batches = {}
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


def share_columns(frame: Frame, previous: Mapping[str, pa.RecordBatch]) -> Frame:
    """`frame` with each column equal to `previous`'s (same table, same place) replaced by previous's array.

    `previous` is each table's newest batch before this frame (tables a source sends every few ticks
    too, such as processes).

    Arrow arrays are immutable, so two equal ones are interchangeable: a head of one rack's frames then
    holds its columns that do not change from tick to tick (GPU, link and endpoint ids, labels, histogram
    bucket bounds, idle counters) once, not once a tick. Values never change, only where they live.
    """
    batches: dict[str, pa.RecordBatch] = {}
    for name, batch in frame.batches.items():
        before = previous.get(name)
        if before is None or before.num_rows != batch.num_rows or before.schema != batch.schema:
            batches[name] = batch
            continue
        arrays = [
            old if _same_buffers(old, new) or old.equals(new) else new
            for old, new in zip(before.columns, batch.columns, strict=True)
        ]
        shared = any(_same_buffers(a, b) for a, b in zip(arrays, before.columns, strict=True))
        batches[name] = pa.RecordBatch.from_arrays(arrays, schema=batch.schema) if shared else batch
    if all(batches[name] is batch for name, batch in frame.batches.items()):
        return frame  # nothing shared (the first frame, a new layout): the frame as it came
    return Frame(frame.ts_ms, batches)


def _same_buffers(a: pa.Array, b: pa.Array) -> bool:
    """Whether two arrays are views of the same buffers (already shared)."""
    return a.offset == b.offset and [x.address if x else 0 for x in a.buffers()] == [
        x.address if x else 0 for x in b.buffers()
    ]


def thinning_head(capacity: int = 600) -> Head:
    """A head that thins its frames with age (module docstring): the live client's and a replay's."""
    return Head(capacity, hist_keep_ms=HIST_KEEP_MS, detail_keep_ms=DETAIL_KEEP_MS)
