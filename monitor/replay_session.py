"""ReplaySession: a store replayed into a Head at a moving cursor, on its own player thread.

The TUI's keys only record requests (they return at once); the player thread reads frames around the
cursor (monitor.replay.FrameLoader) and swaps them into the head on a seek, or appends them as it
plays, so the app follows a replay exactly as it follows a live rack.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable

from monitor.replay import (
    CHUNK_FRAMES,
    GAP_MS,
    HIST_TAIL_MS,
    HISTORY_FRAMES,
    KEEP_FRAMES,
    SPEEDS,
    EmptyStoreError,
    FrameLoader,
    ReplayCursor,
    ReplayState,
    load_ticks,
    speed_label,
)
from storage.frame import Frame
from storage.head import Head
from storage.reader import StoreReader


class ReplaySession:
    """A store replayed into `head`: seeks, steps, play/pause and speed, served by a player thread.

    Requests (play, seek_by, step...) only record what was asked and return at once; the player thread
    (start()) reads the frames and swaps or appends them to the head. Successive seeks before a read
    coalesce into one. Tests may instead call service() themselves, without start().

    Args:
        reader: the store.
        head: the head the TUI follows.
        start_ms: where the cursor starts (default: the first tick).
        speed: initial playback speed (one of SPEEDS).
        history: frames ending at the cursor to load on a seek.
        chunk: frames read ahead at once when moving forward.
        keep: the most frames kept in memory.
        monotonic: the real-time clock playback follows.

    Raises:
        EmptyStoreError: the store holds no frames.
    """

    def __init__(
        self,
        reader: StoreReader,
        head: Head,
        *,
        start_ms: int | None = None,
        speed: float = 1.0,
        history: int = HISTORY_FRAMES,
        chunk: int = CHUNK_FRAMES,
        keep: int = KEEP_FRAMES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Open the recording; nothing is loaded until the first service()."""
        if speed not in SPEEDS:
            raise ValueError(f"speed must be one of {', '.join(speed_label(s) for s in SPEEDS)}")
        ticks = load_ticks(reader)
        if not ticks:
            raise EmptyStoreError(f"{reader.root} holds no frames to replay")
        self.cursor = ReplayCursor(ticks)
        self.head = head
        self.loader = FrameLoader(reader)
        self.history = history
        self.chunk = max(1, chunk)
        self.keep = max(keep, history + self.chunk)
        self._monotonic = monotonic
        self._changed = threading.Condition()
        self._service_lock = threading.Lock()
        self._index = -1
        self._target: int | None = self.cursor.index_at(ticks[0] if start_ms is None else start_ms)
        self._speed = speed
        self._playing = False
        self._play_ms = float(ticks[0])
        self._last_now: float | None = None
        self._error: str | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[ReplayState], None]] = []
        # Frames held in memory: ticks[self._lo : self._lo + len(self._frames)], contiguous.
        self._frames: list[Frame] = []
        self._lo = 0
        self._complete_from = 0

    # -- requests (any thread; they return at once) -------------------------------------------

    @property
    def state(self) -> ReplayState:
        """The cursor, range, speed and play state now."""
        with self._changed:
            return self._state()

    def _state(self) -> ReplayState:
        ticks = self.cursor.ticks
        shown = self._target if self._target is not None else max(self._index, 0)
        return ReplayState(
            cursor_ms=ticks[shown],
            first_ms=ticks[0],
            last_ms=ticks[-1],
            speed=self._speed,
            playing=self._playing,
            loading=self._target is not None,
            error=self._error,
        )

    def add_listener(self, listener: Callable[[ReplayState], None]) -> None:
        """Call `listener(state)` after every change (on the thread that made it)."""
        self._listeners.append(listener)

    def _base(self) -> int:
        """The position moves start from: the pending seek, else the tick shown."""
        return self._target if self._target is not None else max(self._index, 0)

    def _request(self, change: Callable[[], None]) -> None:
        with self._changed:
            change()
            self._changed.notify_all()
            state = self._state()
        self._announce(state)

    def _announce(self, state: ReplayState) -> None:
        for listener in self._listeners:
            listener(state)

    def play(self) -> None:
        """Start advancing the cursor at the current speed (from the start again when at the end)."""

        def change() -> None:
            if self._base() == self.cursor.last or (self._index < 0 and self._target is None):
                self._target = 0
            self._playing = True
            self._last_now = None
            self._error = None

        self._request(change)

    def pause(self) -> None:
        """Stop advancing the cursor."""
        self._request(lambda: setattr(self, "_playing", False))

    def toggle_play(self) -> None:
        """Pause when playing, play when paused."""
        if self.state.playing:
            self.pause()
        else:
            self.play()

    def _seek(self, index: int) -> None:
        self._target = index

    def step(self, n: int) -> None:
        """Pause and move `n` ticks (negative: back)."""

        def change() -> None:
            self._playing = False
            self._seek(self.cursor.step(self._base(), n))

        self._request(change)

    def seek_by(self, delta_ms: int) -> None:
        """Move the cursor `delta_ms` of data time (negative: back), clamped to the recording."""
        self._request(lambda: self._seek(self.cursor.seek_by(self._base(), delta_ms)))

    def seek_to(self, ms: int) -> None:
        """Move the cursor to the newest tick at or before `ms`."""
        self._request(lambda: self._seek(self.cursor.index_at(ms)))

    def set_speed(self, speed: float) -> None:
        """Play at `speed` (one of SPEEDS)."""
        if speed not in SPEEDS:
            raise ValueError(f"speed must be one of {', '.join(speed_label(s) for s in SPEEDS)}")
        self._request(lambda: setattr(self, "_speed", speed))

    def faster(self) -> None:
        """The next speed up (16x at most)."""
        self.set_speed(SPEEDS[min(len(SPEEDS) - 1, SPEEDS.index(self._speed) + 1)])

    def slower(self) -> None:
        """The next speed down (0.25x at least)."""
        self.set_speed(SPEEDS[max(0, SPEEDS.index(self._speed) - 1)])

    # -- the player --------------------------------------------------------------------------

    def service(self, now: float | None = None) -> bool:
        """Carry out a pending seek, else advance a playing cursor to real time `now`.

        Reads the store (not on a UI loop). Only one call runs at a time.

        Returns:
            True when the head changed.
        """
        with self._service_lock:
            changed = self._service(self._monotonic() if now is None else now)
        if changed:
            # Said again once the work is over, so a waiter that checks `busy` hears of it.
            self._announce(self.state)
        return changed

    @property
    def busy(self) -> bool:
        """A seek is pending or the player is reading or feeding the head right now."""
        with self._changed:
            return self._target is not None or self._service_lock.locked()

    def _service(self, now: float) -> bool:
        with self._changed:
            target, playing = self._target, self._playing
        if target is not None:
            lo = max(0, target - self.history + 1)
            frames, partial = self._window(lo, target)
            # The views cache what they derive from a frame by its time, so a frame goes to the head
            # whole, histograms included, never to be completed later.
            self.head.replace(self._complete(lo, target) if partial else frames)
            with self._changed:
                self._index = target
                if self._target == target:
                    self._target = None
                self._play_ms = float(self.cursor.ticks[target])
                self._last_now = now
                state = self._state()
            self._announce(state)
            return True
        if playing:
            return self._advance(now)
        return False

    def _advance(self, now: float) -> bool:
        ticks = self.cursor.ticks
        with self._changed:
            elapsed = 0.0 if self._last_now is None else max(0.0, now - self._last_now)
            self._last_now = now
            self._play_ms += elapsed * self._speed * 1000
            index = self._index
            if index < self.cursor.last and ticks[index + 1] - ticks[index] > GAP_MS:
                self._play_ms = max(self._play_ms, float(ticks[index + 1]))
            upto = max(index, self.cursor.index_at(self._play_ms))
        if upto == index:
            return False
        frames, partial = self._window(index + 1, upto)
        for frame in self._complete(index + 1, upto) if partial else frames:
            self.head.append(frame)
        with self._changed:
            self._index = upto
            if upto == self.cursor.last:
                self._playing = False
            state = self._state()
        self._announce(state)
        return True

    def _tail_start(self, hi: int) -> int:
        """The first tick whose serving histograms the views use when tick `hi` is the newest."""
        return bisect.bisect_left(self.cursor.ticks, self.cursor.ticks[hi] - HIST_TAIL_MS)

    def _window(self, lo: int, hi: int) -> tuple[list[Frame], bool]:
        """Frames of ticks lo..hi (inclusive), from memory where held, reading ahead when moving on.

        Returns:
            The frames, and True when they were read afresh without their serving histograms:
            _complete() then reads them for the views' window only (they are most of a window's rows).
        """
        ticks = self.cursor.ticks
        held_hi = self._lo + len(self._frames) - 1
        # Held frames from _complete_from on have their serving histograms; older ones may not.
        complete = self._tail_start(hi) >= self._complete_from
        partial = False
        if self._frames and self._lo <= lo and hi <= held_hi and complete:
            pass
        elif (
            self._frames
            and self._lo <= lo <= held_hi + 1
            and held_hi < hi <= held_hi + self.chunk
            and complete
        ):
            # Moving forward past what is held: read the next chunk whole, drop the oldest frames.
            upto = min(self.cursor.last, max(hi, held_hi + self.chunk))
            self._frames += self.loader.frames(ticks[held_hi + 1 : upto + 1])
            drop = min(max(0, len(self._frames) - self.keep), lo - self._lo)
            self._frames = self._frames[drop:]
            self._lo += drop
        else:
            self._frames = self.loader.frames(ticks[lo : hi + 1], skip=("serving_hist",))
            self._lo = lo
            self._complete_from = hi + 1
            partial = True
        return self._frames[lo - self._lo : hi - self._lo + 1], partial

    def _complete(self, lo: int, hi: int) -> list[Frame]:
        """Add the serving histograms the views use at tick `hi` to the held frames; return lo..hi."""
        start = max(self._tail_start(hi), self._lo)
        with_hist = self.loader.frames(self.cursor.ticks[start : hi + 1], only=("serving_hist",))
        for i, extra in enumerate(with_hist, start=start - self._lo):
            if extra.batches:
                self._frames[i] = Frame(self._frames[i].ts_ms, {**self._frames[i].batches, **extra.batches})
        self._complete_from = start
        return self._frames[lo - self._lo : hi - self._lo + 1]

    def _wait_s(self) -> float | None:
        """Seconds the player may sleep: until the next tick is due while playing, else until asked."""
        if self._target is not None:
            return 0.0
        if not self._playing:
            return None
        if self._index >= self.cursor.last:
            return 0.0
        due_ms = self.cursor.ticks[self._index + 1] - self._play_ms
        return min(0.5, max(0.005, due_ms / 1000 / self._speed))

    def start(self) -> None:
        """Start the player thread (it carries out the first seek, to the start position, at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="replay-player", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._changed:
                if self._closed:
                    return
                wait = self._wait_s()
                if wait is None or wait > 0:
                    self._changed.wait(wait)
                if self._closed:
                    return
            try:
                self.service()
            except Exception as err:  # a vanished or unreadable file pauses the replay, it does not end it
                with self._changed:
                    self._error = f"cannot read the store: {type(err).__name__}: {err}".splitlines()[0]
                    self._target = None
                    self._playing = False
                    state = self._state()
                self._announce(state)

    def close(self) -> None:
        """Stop the player thread and wait for it."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
