"""Simulated history, written fast: the sim rack on a manual clock, polled tick by tick, into a store.

By default the frames come from the sim's fast path (collectors.sim.frames.SimRackFrames: the rack's
state read directly, ~10x cheaper a tick), which tests/sim/test_fast_frames.py holds equal to the
driver path, and it adds the inference servers' serving rows. `exact=True` (`--exact`) instead polls
the path a live rack uses (a pynvml-compatible SimTray per compute tray read by the real
NvmlCollector; no serving rows). Either way the frames go through the real StoreWriter.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from storage.frame import Frame, merge_frames
from storage.writer import StoreWriter

log = logging.getLogger("monitor.backfill")


class SimFrames:
    """Rack frames of the simulated GB300 NVL72 on a manual clock, one per `interval_s` from `start_s`.

    Args:
        seed: the sim's seed.
        scenario: a sim scenario name.
        start_s: epoch seconds of the first tick.
        interval_s: seconds between ticks.
        fast: read the rack through the fast path (SimRackFrames: ~10x cheaper a tick, serving rows
            included) instead of the exact driver path (one NvmlCollector per SimTray, as a live
            rack is read; no serving rows). tests/sim/test_fast_frames.py holds the two equal.
        fault_at: seconds after start_s at which the scenario's fault begins.
    """

    def __init__(
        self,
        seed: int,
        scenario: str,
        start_s: float,
        interval_s: float = 1.0,
        *,
        fast: bool = False,
        fault_at: float = 60.0,
    ) -> None:
        """Build the sim rack and its sources: the fast one, or one NVML collector per tray."""
        from collectors.clock import SimClock
        from collectors.sim import SimRack
        from collectors.source import Source

        self.clock = SimClock(start_s)
        self.interval_s = interval_s
        self.rack = SimRack(seed, scenario, self.clock, start=start_s, fault_at=fault_at)
        self.sources: list[Source]
        if fast:
            from collectors.sim.frames import SimRackFrames

            self.sources = [SimRackFrames(self.rack)]
        else:
            from collectors.nvml import NvmlCollector
            from collectors.sim.frames import tray_source

            self.sources = [NvmlCollector(tray, name=tray_source(tray.tray)) for tray in self.rack.trays]
        self._tick = 0

    def __iter__(self) -> Iterator[Frame]:
        """Frames forever; the caller stops."""
        return self

    def __next__(self) -> Frame:
        """Move the clock one interval (except for the first tick) and poll every source."""
        if self._tick:
            self.clock.advance(self.interval_s)
        self._tick += 1
        ts_ms = round(self.clock.now() * 1000)
        if len(self.sources) == 1:
            return self.sources[0].poll(ts_ms)
        return merge_frames(ts_ms, [s.poll(ts_ms) for s in self.sources])

    def close(self) -> None:
        """Close every source."""
        for s in self.sources:
            s.close()


class Prefetch:
    """Up to `count` frames of `source`, made in a helper thread while the caller writes earlier ones.

    A writer's seals and compactions run mostly inside Arrow, Parquet and zstd, which release the GIL,
    so the next frames' Python work overlaps them. Use as a context manager: leaving it stops the
    thread before the caller closes the source.

    Args:
        source: the frames.
        count: how many to take from it.
        depth: frames made ahead at most (bounds memory).
    """

    def __init__(self, source: Iterator[Frame], count: int, depth: int = 64) -> None:
        """Start making frames."""
        self._source = source
        self._count = count
        self._queue: queue.Queue[tuple[Frame | None, BaseException | None]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="backfill-frames", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for _ in range(self._count):
                if self._stop.is_set():
                    return
                self._queue.put((next(self._source), None))
        except BaseException as err:  # handed to the consumer, which raises it in its own thread
            self._queue.put((None, err))

    def __iter__(self) -> Iterator[Frame]:
        """The frames, in order; re-raises whatever the source raised."""
        for _ in range(self._count):
            frame, err = self._queue.get()
            if err is not None:
                raise err
            assert frame is not None
            yield frame

    def __enter__(self) -> Prefetch:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the helper thread (unblocking it if the queue is full) and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill wrote.

    Attributes:
        ticks: frames written.
        rows: rows over all tables.
        first_ms: the first tick's time.
        last_ms: the last tick's time.
        seconds: wall time taken.
    """

    ticks: int
    rows: int
    first_ms: int
    last_ms: int
    seconds: float


def backfill(
    root: Path,
    duration_s: float,
    *,
    scenario: str = "steady",
    seed: int = 0,
    end_s: float | None = None,
    interval_s: float = 1.0,
    flush_interval_s: float = 600.0,
    frames: Callable[[float], Iterator[Frame]] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    exact: bool = False,
) -> BackfillResult:
    """Write `duration_s` of simulated history ending at `end_s` (default: now) into the store at `root`.

    Args:
        root: the store directory (created if new; refused if another writer holds it).
        duration_s: how much history.
        scenario: sim scenario.
        seed: sim seed.
        end_s: epoch seconds of the last tick, rounded down to the interval.
        interval_s: seconds between ticks.
        flush_interval_s: data time per sealed segment (large: the writer is not racing a clock).
        frames: a frame iterator factory taking the start time, instead of the sim (for tests).
        on_progress: called with (ticks done, ticks total) every simulated hour.
        exact: poll the NVML driver path (~10x slower, no serving rows) instead of the fast path
            (see SimFrames).

    Returns:
        A BackfillResult.
    """
    end = (time.time() if end_s is None else end_s) // interval_s * interval_s
    total = int(duration_s // interval_s)
    start = end - (total - 1) * interval_s
    if frames is not None:
        source: Iterator[Frame] = frames(start)
        closer: Callable[[], None] | None = None
    else:
        sim = SimFrames(seed, scenario, start, interval_s, fast=not exact)
        source, closer = sim, sim.close
    began = time.perf_counter()
    rows = 0
    first_ms = last_ms = 0
    per_hour = max(1, int(3600 // interval_s))
    try:
        with (
            StoreWriter(root, compaction="inline", flush_interval_s=flush_interval_s, grace_s=0.0) as writer,
            Prefetch(source, total) as ahead,
        ):
            for i, frame in enumerate(ahead):
                writer.store(frame)
                rows += frame.rows
                first_ms = first_ms or frame.ts_ms
                last_ms = frame.ts_ms
                if on_progress is not None and (i + 1) % per_hour == 0:
                    on_progress(i + 1, total)
            writer.flush()
            writer.compact()
    finally:
        if closer is not None:
            closer()
    return BackfillResult(total, rows, first_ms, last_ms, time.perf_counter() - began)
