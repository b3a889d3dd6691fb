"""The poller: ticks every source on a fixed grid, off the UI's event loop, and hands finished Frames on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

import pyarrow as pa
import pyarrow.compute as pc

from collectors.clock import Clock, WallClock
from collectors.source import Source
from storage.frame import Frame, batch_from_rows, merge_frames
from storage.head import Head
from storage.schemas import EventKind, GpuState

log = logging.getLogger(__name__)

Sink = Callable[[Frame], None]
"""Something that takes each rack frame after the head has it (the store writer, a test)."""

_IDENTITY_COLUMNS = ("ts", "gpu", "uuid", "tray")


class Poller:
    """Polls every source once per tick and appends the merged rack Frame to a Head.

    Each source is polled in its own worker thread with a deadline, so a slow or hung source never
    delays the tick for the others: it is marked stale (an event when it goes and when it comes
    back), its GPUs appear with state STALE, and it is not polled again until its last poll returns.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        head: Head,
        *,
        interval: float = 1.0,
        clock: Clock | None = None,
        deadline: float | None = None,
        sinks: Sequence[Sink] = (),
    ) -> None:
        """Args:
        sources: what to poll each tick.
        head: where each merged frame goes.
        interval: seconds between ticks; timestamps are snapped to this grid.
        clock: the time source (a SimClock for simulated racks).
        deadline: seconds a source may take before it counts as stale (default 0.8 x interval).
        sinks: called with every frame after the head has it, in the poller's thread.
        """
        if interval <= 0:
            raise ValueError("the poll interval must be positive")
        self.sources = list(sources)
        self.head = head
        self.interval = interval
        self.clock = clock or WallClock()
        self.deadline = deadline if deadline is not None else 0.8 * interval
        self.sinks = list(sinks)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(len(self.sources), 32)), thread_name_prefix="poll"
        )
        self._inflight: dict[int, Future[Frame]] = {}
        self._stale: set[int] = set()
        self._last_gpu: dict[int, pa.RecordBatch] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick_ts_ms(self) -> int:
        """The current tick's timestamp: now, snapped to the interval grid, in epoch ms."""
        step_ms = round(self.interval * 1000)
        return round(self.clock.now() * 1000 / step_ms) * step_ms

    def tick(self, ts_ms: int | None = None) -> Frame:
        """Poll every source once, merge, append to the head, feed the sinks; return the frame."""
        ts = self.tick_ts_ms() if ts_ms is None else ts_ms
        for i, source in enumerate(self.sources):
            if i not in self._inflight:
                self._inflight[i] = self._pool.submit(source.poll, ts)
        wait(list(self._inflight.values()), timeout=self.deadline)
        parts: list[Frame] = []
        events: list[dict[str, object]] = []
        for i, source in enumerate(self.sources):
            part = self._collect(i, source, ts, events)
            if part is not None:
                parts.append(part)
        if events:
            parts.append(Frame(ts, {"events": batch_from_rows("events", events)}))
        frame = merge_frames(ts, parts)
        self.head.append(frame)
        for sink in self.sinks:
            sink(frame)
        return frame

    def _collect(self, i: int, source: Source, ts: int, events: list[dict[str, object]]) -> Frame | None:
        """Take source i's finished poll, or stand in for it with STALE rows when it is late or failed."""
        future = self._inflight[i]
        if future.done():
            del self._inflight[i]
            try:
                part = future.result()
            except Exception as err:  # one broken source must never stop the rack's tick
                log.warning("source %s failed: %s", source.name, err)
                self._mark_stale(i, source, ts, events, f"poll failed: {err}")
                return self._stale_rows(i, ts)
            if i in self._stale:
                self._stale.discard(i)
                events.append(_source_event(ts, EventKind.ENDPOINT_UP, source.name, "answering again"))
            if "gpu" in part.batches:
                self._last_gpu[i] = part.batches["gpu"]
            return part
        self._mark_stale(i, source, ts, events, f"no answer within {self.deadline:.2f} s")
        return self._stale_rows(i, ts)

    def _mark_stale(self, i: int, source: Source, ts: int, events: list[dict[str, object]], why: str) -> None:
        if i not in self._stale:
            self._stale.add(i)
            events.append(_source_event(ts, EventKind.ENDPOINT_DOWN, source.name, why))

    def _stale_rows(self, i: int, ts: int) -> Frame | None:
        """The GPUs source i reported last time, with state STALE and no metrics."""
        last = self._last_gpu.get(i)
        if last is None:
            return None
        n = last.num_rows
        columns = {name: last.column(name) for name in _IDENTITY_COLUMNS[1:]}
        arrays = []
        for field in last.schema:
            if field.name == "ts":
                arrays.append(pa.array([ts] * n, type=field.type))
            elif field.name == "state":
                arrays.append(pa.array([int(GpuState.STALE)] * n, type=field.type))
            elif field.name in columns:
                arrays.append(columns[field.name])
            else:
                arrays.append(pa.nulls(n, field.type))
        stale = pa.RecordBatch.from_arrays(arrays, schema=last.schema)
        # a LOST GPU stays LOST even while its host is silent: that is the more important fact
        lost = pc.equal(last.column("state"), int(GpuState.LOST))
        if pc.any(lost).as_py():
            state = pc.if_else(lost, last.column("state"), stale.column("state"))
            stale = stale.set_column(stale.schema.get_field_index("state"), "state", state)
        return Frame(ts, {"gpu": stale})

    def start(self) -> None:
        """Tick in a background thread until stop()."""
        if self._thread is not None:
            raise RuntimeError("poller already started")
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = self.clock.now()
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # keep the live view alive; the failure is logged with its cause
                log.exception("tick failed")
            next_at += self.interval
            delay = next_at - self.clock.now()
            if delay < 0:  # fell behind: skip missed ticks rather than bursting
                next_at = self.clock.now()
                continue
            self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        """Sleep on the poller's clock, waking early when stopped."""
        speed = getattr(self.clock, "speed", 1.0)
        if speed == 0:  # a manual clock: move it, do not wait
            self.clock.sleep(seconds)
            self._stop.wait(0)
            return
        self._stop.wait(seconds / speed)

    def stop(self) -> None:
        """Stop ticking, wait for the thread, and close every source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for source in self.sources:
            try:
                source.close()
            except Exception as err:  # closing is best effort; report and go on
                log.warning("closing %s: %s", source.name, err)


def _source_event(ts: int, kind: str, source: str, detail: str) -> dict[str, object]:
    return {"ts": ts, "kind": kind, "source": source, "detail": detail}
