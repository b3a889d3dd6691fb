"""The poller: ticks every source on a fixed grid, off the UI's event loop, and hands finished Frames on.

Ticks overlap but frames do not: tick N's polls may still be running when tick N+1 starts (a source's
timeout may exceed the interval), yet frames reach the head strictly in time order, each holding only
what was polled for its own tick. A tick's frame is emitted once every source polled for it has
answered or its deadline has passed. A source still busy with an earlier tick is not polled again (it
gets stand-in rows for the ticks it misses); an answer that comes after its tick was emitted is
dropped and counted, never merged into a later frame (that stored one (GPU, time) twice).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from collectors.clock import Clock, WallClock
from collectors.source import Source
from collectors.stand_ins import stale_gpu_rows
from storage.frame import Frame, batch_from_rows, merge_frames
from storage.head import Head
from storage.row_keys import unique_frame
from storage.schemas import EventKind

log = logging.getLogger(__name__)

Sink = Callable[[Frame], None]
"""Something that takes each rack frame after the head has it (the store writer, a test)."""

MAPPING_ALLOWANCE_S = 1.0
"""Seconds a source may take past its own timeout (parsing 90 pages on a loaded host) before its tick
is emitted without it."""
LATE_FRACTION = 0.5
"""A tick that starts more than this fraction of the interval late marks the collector as late."""
DEFAULT_DOWN_AFTER = 3
"""Consecutive ticks without an answer before a source counts as down (a failure counts at once)."""


def default_deadline(sources: Sequence[Source], interval: float) -> float:
    """Seconds a tick waits for its sources: the slowest source's own timeout plus mapping time.

    Sources without a timeout (NVML) get 0.8 of the interval, as before.
    """
    timeouts = [float(t) for s in sources if (t := getattr(s, "timeout_s", None)) is not None]
    return max([0.8 * interval, *(t + MAPPING_ALLOWANCE_S for t in timeouts)])


@dataclass
class _Tick:
    """One tick between its start and its frame's emission."""

    ts: int
    due: float
    """time.monotonic() after which the frame is emitted with stand-ins for whoever has not answered."""
    late_s: float
    polls: dict[int, Future[Frame]] = field(default_factory=dict)


@dataclass
class _Health:
    """A source's standing: consecutive ticks without an answer, and whether it was reported down."""

    misses: int = 0
    down: bool = False


class Poller:
    """Polls every source once per tick and appends the merged rack Frame to a Head, in time order.

    Each source is polled in a worker thread with a deadline, so a slow or hung source never delays
    the others' data: its GPUs appear with state STALE, and after `down_after` consecutive ticks
    without an answer (or at once when its poll raises) an endpoint_down event names it. When the
    collector itself is late (a tick starts late, or a source reports a collector_late event) one
    collector_late event is recorded for the episode and the ticks' misses count against nobody.
    A source with `max_concurrent_polls` > 1 (the scrape source, which tracks its endpoints itself)
    is polled again while earlier polls still run.
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
        down_after: int = DEFAULT_DOWN_AFTER,
        name: str = "collector",
    ) -> None:
        """Args:
        sources: what to poll each tick.
        head: where each merged frame goes.
        interval: seconds between ticks; timestamps are on this grid.
        clock: the time source (a SimClock for simulated racks).
        deadline: real seconds a tick waits for its sources (default: default_deadline()); may
            exceed the interval.
        sinks: called with every frame after the head has it, in the poller's thread.
        down_after: consecutive missed ticks before a source is reported down.
        name: the collector's name in collector_late events.
        """
        if interval <= 0:
            raise ValueError("the poll interval must be positive")
        if down_after < 1:
            raise ValueError("down_after must be at least 1")
        self.sources = list(sources)
        self.head = head
        self.interval = interval
        self.clock = clock or WallClock()
        self.deadline = deadline if deadline is not None else default_deadline(self.sources, interval)
        self.sinks = list(sinks)
        self.down_after = down_after
        self.name = name
        self._step_ms = round(interval * 1000)
        self._limits = [max(1, int(getattr(s, "max_concurrent_polls", 1))) for s in self.sources]
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(sum(self._limits), 64)), thread_name_prefix="poll"
        )
        self._inflight: list[list[Future[Frame]]] = [[] for _ in self.sources]
        self._orphans: set[Future[Frame]] = set()
        self._pending: deque[_Tick] = deque()
        self._health = [_Health() for _ in self.sources]
        self._last_gpu: dict[int, pa.RecordBatch] = {}
        self._last_started: int | None = None
        self._late_episode = False
        self.late_answers = 0
        """Polls that answered after their tick's frame was emitted (dropped, never merged later)."""
        self.duplicate_rows = 0
        """Rows dropped because a frame repeated a (table keys, ts)."""
        self._stop = threading.Event()
        self._wake: Future[None] = Future()
        self._thread: threading.Thread | None = None

    def tick_ts_ms(self) -> int:
        """The current tick's timestamp: now, snapped to the interval grid, in epoch ms."""
        return round(self.clock.now() * 1000 / self._step_ms) * self._step_ms

    def tick(self, ts_ms: int | None = None) -> Frame:
        """Poll every free source for one tick, wait for its frame (answers or deadline), return it."""
        started = self.start_tick(self.tick_ts_ms() if ts_ms is None else ts_ms, late_s=0.0)
        while True:
            for frame in self.emit_ready():
                if frame.ts_ms == started.ts:
                    return frame
            self._wait_for_oldest(started.due - time.monotonic())

    # -- starting and finishing ticks ---------------------------------------------------------------

    def start_tick(self, ts: int, late_s: float = 0.0) -> _Tick:
        """Submit a poll, stamped `ts`, to every source not busy with earlier ticks (for a caller's own loop).

        `late_s`: how late the tick starts; past LATE_FRACTION of the interval the collector is late.
        """
        if self._last_started is not None and ts <= self._last_started:
            # Two ticks on one grid point would store every row twice: move to the next point.
            ts = self._last_started + self._step_ms
        self._last_started = ts
        started = _Tick(ts, time.monotonic() + self.deadline, late_s)
        for i, source in enumerate(self.sources):
            self._reap(i, source)
            if sum(not f.done() for f in self._inflight[i]) < self._limits[i]:
                future = self._pool.submit(source.poll, ts)
                self._inflight[i].append(future)
                started.polls[i] = future
        self._pending.append(started)
        return started

    def _reap(self, i: int, source: Source) -> None:
        """Forget source i's finished polls whose ticks were emitted without them: late, dropped."""
        for future in [f for f in self._inflight[i] if f.done() and f in self._orphans]:
            self._inflight[i].remove(future)
            self._orphans.discard(future)
            self.late_answers += 1
            why = "failed" if future.exception() is not None else "answered"
            log.debug(
                "%s %s after its tick was emitted; dropped (%d so far)", source.name, why, self.late_answers
            )

    def emit_ready(self) -> list[Frame]:
        """Emit, oldest first, every pending tick whose polls all answered or whose deadline passed.

        A tick never overtakes an older one still waiting: frames reach the head in time order.
        """
        emitted: list[Frame] = []
        now = time.monotonic()
        while self._pending:
            oldest = self._pending[0]
            if now < oldest.due and not all(f.done() for f in oldest.polls.values()):
                break
            self._pending.popleft()
            emitted.append(self._emit(oldest))
        return emitted

    def _emit(self, done: _Tick) -> Frame:
        """Build the tick's frame from what answered in time, stand in for the rest, hand it on."""
        answers: dict[int, Frame | BaseException] = {}
        for i, future in done.polls.items():
            if future.done():
                self._inflight[i].remove(future)
                error = future.exception()
                answers[i] = error if error is not None else future.result()
            else:
                self._orphans.add(future)  # its answer, when it comes, is late: dropped by _reap
        answered = merge_frames(done.ts, [a for a in answers.values() if isinstance(a, Frame)])
        late_events = _take_late_events(answered)
        late = done.late_s > LATE_FRACTION * self.interval or bool(late_events)
        events = self._late_event(done, late_events) if late else []
        self._late_episode = late
        parts = [_without_late_events(answered)]
        for i, source in enumerate(self.sources):
            answer = answers.get(i)
            if isinstance(answer, Frame):
                self._answered(i, source, answer, done.ts, events)
                continue
            stand_in = self._stale_rows(i, done.ts)
            if stand_in is not None:
                parts.append(stand_in)
            if answer is not None:
                self._failed(i, source, answer, done.ts, events)
            elif not late:
                self._missed(i, source, done.ts, events)
        if events:
            parts.append(Frame(done.ts, {"events": batch_from_rows("events", events)}))
        frame, dropped = unique_frame(merge_frames(done.ts, parts))
        self._count_duplicates(dropped, done.ts)
        self.head.append(frame)
        for sink in self.sinks:
            sink(frame)
        return frame

    # -- health ---------------------------------------------------------------------------------

    def _answered(
        self, i: int, source: Source, part: Frame, ts: int, events: list[dict[str, object]]
    ) -> None:
        health = self._health[i]
        if health.down:
            events.append(
                _source_event(ts, EventKind.ENDPOINT_UP, source.name, f"{source.name} answering again")
            )
        health.misses, health.down = 0, False
        if "gpu" in part.batches:
            self._last_gpu[i] = part.batches["gpu"]

    def _failed(
        self, i: int, source: Source, err: BaseException, ts: int, events: list[dict[str, object]]
    ) -> None:
        """A poll that raised: the whole source is unusable now, so it is down at once."""
        log.warning("source %s failed: %s", source.name, err)
        health = self._health[i]
        health.misses += 1
        if not health.down:
            health.down = True
            events.append(
                _source_event(ts, EventKind.ENDPOINT_DOWN, source.name, f"{source.name}: poll failed: {err}")
            )

    def _missed(self, i: int, source: Source, ts: int, events: list[dict[str, object]]) -> None:
        """No answer for this tick (still running, or past the deadline): stale, and down after a few."""
        health = self._health[i]
        health.misses += 1
        if health.misses >= self.down_after and not health.down:
            health.down = True
            detail = (
                f"{source.name}: no answer in {health.misses} consecutive ticks "
                f"(deadline {self.deadline:g} s)"
            )
            log.warning("%s", detail)
            events.append(_source_event(ts, EventKind.ENDPOINT_DOWN, source.name, detail))

    def _late_event(self, done: _Tick, reported: list[dict[str, object]]) -> list[dict[str, object]]:
        """One collector_late event per episode of late ticks: the sources' own, else the poller's."""
        if self._late_episode:
            return []
        if reported:
            return reported[:1]
        stamp = time.strftime("%H:%M:%S", time.gmtime(done.ts / 1000))
        detail = f"collector late by {done.late_s:.1f} s: tick {stamp} started late"
        log.warning("%s", detail)
        return [_source_event(done.ts, EventKind.COLLECTOR_LATE, self.name, detail)]

    def _count_duplicates(self, dropped: dict[str, int], ts: int) -> None:
        if not dropped:
            return
        if self.duplicate_rows == 0:
            log.warning("tick %d repeated (keys, ts) rows, first of each kept: %s", ts, dropped)
        self.duplicate_rows += sum(dropped.values())

    def _stale_rows(self, i: int, ts: int) -> Frame | None:
        """The GPUs source i reported last time, with state STALE and no metrics."""
        stale = stale_gpu_rows(self._last_gpu.get(i), ts)
        return None if stale is None else Frame(ts, {"gpu": stale})

    # -- the background loop ------------------------------------------------------------------------

    def start(self) -> None:
        """Tick in a background thread until stop()."""
        if self._thread is not None:
            raise RuntimeError("poller already started")
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        step = self._step_ms
        next_ts = -(-round(self.clock.now() * 1000) // step) * step  # the first grid point from now
        while not self._stop.is_set():
            try:
                now_ms = self.clock.now() * 1000
                if now_ms >= next_ts:
                    behind_ms = now_ms - next_ts
                    if behind_ms >= step:  # fell behind: skip the ticks that can no longer start on time
                        next_ts += int(behind_ms // step) * step
                    self.start_tick(next_ts, late_s=behind_ms / 1000)
                    next_ts += step
                self.emit_ready()
            except Exception:  # keep the live view alive; the failure is logged with its cause
                log.exception("tick failed")
            self._wait(next_ts)

    def _wait(self, next_ts: int) -> None:
        """Sleep until the next tick is due or a pending tick can be emitted, waking early when stopped."""
        until_tick_s = (next_ts - self.clock.now() * 1000) / 1000
        speed = getattr(self.clock, "speed", 1.0)
        if speed == 0 and not self._pending:  # a manual clock with nothing pending: move it, do not wait
            self.clock.sleep(until_tick_s)
            return
        timeout = until_tick_s / speed if speed else None
        if self._pending:
            due = self._pending[0].due - time.monotonic()
            timeout = due if timeout is None else min(timeout, due)
        self._wait_for_oldest(timeout)

    def _wait_for_oldest(self, timeout: float | None) -> None:
        """Wait up to `timeout` s for a poll of the oldest pending tick to finish (or for stop())."""
        running: list[Future[object]] = []
        if self._pending:
            running = [f for f in self._pending[0].polls.values() if not f.done()]
        if timeout is not None and timeout <= 0:
            return
        wait([*running, self._wake], timeout=timeout, return_when=FIRST_COMPLETED)

    def stop(self) -> None:
        """Stop ticking, emit the ticks that are complete, and close every source."""
        self._stop.set()
        if not self._wake.done():
            self._wake.set_result(None)
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            while self._pending and all(f.done() for f in self._pending[0].polls.values()):
                self._emit(self._pending.popleft())
        except Exception:  # the last frames are best effort; closing must still happen
            log.exception("emitting the last ticks failed")
        self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for source in self.sources:
            try:
                source.close()
            except Exception as err:  # closing is best effort; report and go on
                log.warning("closing %s: %s", source.name, err)


def _source_event(ts: int, kind: str, source: str, detail: str) -> dict[str, object]:
    return {"ts": ts, "kind": kind, "source": source, "detail": detail}


def _take_late_events(frame: Frame) -> list[dict[str, object]]:
    """The collector_late events the sources reported in this frame."""
    events = frame.batches.get("events")
    if events is None:
        return []
    return [row for row in events.to_pylist() if row["kind"] == EventKind.COLLECTOR_LATE]


def _without_late_events(frame: Frame) -> Frame:
    """The frame without the sources' collector_late events (the poller keeps one per episode)."""
    events = frame.batches.get("events")
    if events is None:
        return frame
    kept = events.filter(pc.not_equal(events.column("kind"), EventKind.COLLECTOR_LATE))
    return Frame(frame.ts_ms, {**frame.batches, "events": kept})
