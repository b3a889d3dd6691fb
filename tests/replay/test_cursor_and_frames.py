"""Replay without the TUI: cursor maths, 'go to' parsing, frames read back equal to what was recorded, and
the session's seeks, steps, playback and speeds driven tick by tick through service(now)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from monitor.backfill import SimFrames
from monitor.replay import (
    HIST_TAIL_MS,
    SPEEDS,
    EmptyStoreError,
    FrameLoader,
    ReplayCursor,
    ReplayState,
    load_ticks,
    parse_goto,
)
from monitor.replay_session import ReplaySession
from storage.frame import Frame
from storage.head import Head
from storage.reader import StoreReader
from storage.schemas import SORT_KEYS, TABLES
from tests.replay.conftest import END_S, SCENARIO, SECONDS, SEED

FIRST_MS = (END_S - SECONDS + 1) * 1000
"""The backfill's first tick, 2025-06-15T15:03:21Z."""
LAST_MS = END_S * 1000


# -- cursor maths -------------------------------------------------------------------------------


def test_index_at_is_the_newest_tick_at_or_before():
    cursor = ReplayCursor([1000, 2000, 3000, 10_000])
    assert cursor.index_at(0) == 0  # before the recording: its first tick
    assert cursor.index_at(2000) == 1
    assert cursor.index_at(2999) == 1
    assert cursor.index_at(9999) == 2
    assert cursor.index_at(99_999) == 3


def test_steps_and_seeks_clamp_to_the_recording():
    cursor = ReplayCursor([1000, 2000, 3000, 4000])
    assert cursor.step(1, 1) == 2
    assert cursor.step(1, -5) == 0
    assert cursor.step(2, 10) == 3
    assert cursor.seek_by(0, 2000) == 2
    assert cursor.seek_by(3, -10_000) == 0
    assert cursor.seek_by(1, 60_000) == 3


def test_a_forward_seek_shorter_than_a_gap_still_moves_one_tick():
    cursor = ReplayCursor([1000, 2000, 60_000])
    assert cursor.seek_by(1, 10_000) == 2
    assert cursor.seek_by(2, 10_000) == 2  # already at the end


def test_no_ticks_is_an_empty_store():
    with pytest.raises(EmptyStoreError):
        ReplayCursor([])


# -- go to a time -------------------------------------------------------------------------------

STATE = ReplayState(cursor_ms=FIRST_MS + 60_000, first_ms=FIRST_MS, last_ms=LAST_MS, speed=1.0, playing=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("start", FIRST_MS),
        ("END", LAST_MS),
        ("+10s", FIRST_MS + 70_000),
        ("-1m", FIRST_MS),
        ("15:05:00", 1_749_999_900_000),
        ("15:05Z", 1_749_999_900_000),
        ("2025-06-15T15:05:30Z", 1_749_999_930_000),
        ("2025-06-15T17:05:30+02:00", 1_749_999_930_000),
    ],
)
def test_goto_forms(text, expected):
    assert parse_goto(text, STATE) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("14:00", "outside the recording (2025-06-15T15:03:21Z to 2025-06-15T15:06:40Z)"),
        ("+1h", "outside the recording"),
        ("2025-06-15T15:05:30", "give a zone"),
        ("25:00", "bad time"),
        ("yesterday", "bad time"),
        ("+soon", "bad offset"),
    ],
)
def test_goto_refusals_are_one_line(text, says):
    with pytest.raises(ValueError) as err:
        parse_goto(text, STATE)
    assert says in str(err.value) and "\n" not in str(err.value)


# -- frames read back ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded() -> list[Frame]:
    """The frames the backfill wrote, made again from the same seed, scenario and clock."""
    sim = SimFrames(SEED, SCENARIO, FIRST_MS / 1000, 1.0, fast=True)
    try:
        return list(itertools.islice(sim, SECONDS))
    finally:
        sim.close()


@pytest.fixture
def reader(store: Path):
    with StoreReader(store) as r:
        yield r


def canonical(table: str, batch: pa.RecordBatch) -> pa.Table:
    """Rows in a fixed order (a source's row order within a tick is not part of the contract)."""
    keys = SORT_KEYS[table] or tuple(n for n in batch.schema.names if n != "ts")
    return pa.Table.from_batches([batch]).sort_by([(k, "ascending") for k in keys])


def test_ticks_are_the_recorded_ticks(reader, recorded):
    assert load_ticks(reader) == [f.ts_ms for f in recorded]


def test_frames_read_back_equal_the_recorded_frames(reader, recorded):
    ticks = [f.ts_ms for f in recorded]
    frames = FrameLoader(reader).frames(ticks)
    assert [f.ts_ms for f in frames] == ticks
    for want, got in zip(recorded, frames, strict=True):
        tables = {name for name, batch in want.batches.items() if batch.num_rows}
        assert set(got.batches) == tables, want.ts_ms
        for name in tables:
            assert got.batches[name].schema == TABLES[name]
            assert canonical(name, got.batches[name]).equals(canonical(name, want.batches[name])), (
                name,
                want.ts_ms,
            )


def test_frames_can_leave_out_or_keep_only_tables(reader):
    ticks = load_ticks(reader)[:3]
    loader = FrameLoader(reader)
    assert all("serving_hist" not in f.batches for f in loader.frames(ticks, skip=("serving_hist",)))
    assert all(set(f.batches) == {"gpu"} for f in loader.frames(ticks, only=("gpu",)))


# -- the session, tick by tick ------------------------------------------------------------------


@pytest.fixture
def session(reader):
    return ReplaySession(reader, Head())


def newest(session: ReplaySession) -> Frame:
    return session.head.latest()[-1]


def test_first_service_loads_the_start(session):
    assert session.state.loading and session.busy
    assert session.service(0.0)
    assert not session.busy
    state = session.state
    assert (state.cursor_ms, state.first_ms, state.last_ms) == (FIRST_MS, FIRST_MS, LAST_MS)
    assert [f.ts_ms for f in session.head.frames()] == [FIRST_MS]


def test_a_seek_loads_the_history_window_ending_at_the_cursor(session, reader, recorded):
    session.service(0.0)
    session.seek_by(150_000)
    assert session.state.cursor_ms == FIRST_MS + 150_000 and session.state.loading
    session.service(0.0)
    frames = session.head.frames()
    assert [f.ts_ms for f in frames] == [FIRST_MS + i * 1000 for i in range(30, 151)]
    # The frames in the serving view's window carry their histograms; they equal the recorded ones.
    tail = [f for f in frames if f.ts_ms >= FIRST_MS + 150_000 - HIST_TAIL_MS]
    assert tail and all("serving_hist" in f.batches for f in tail)
    by_ts = {f.ts_ms: f for f in recorded}
    for frame in tail:
        got, want = frame.batches["serving_hist"], by_ts[frame.ts_ms].batches["serving_hist"]
        assert canonical("serving_hist", got).equals(canonical("serving_hist", want))


def test_seeks_before_a_read_coalesce(session):
    session.service(0.0)
    version = session.head.version
    for _ in range(3):
        session.seek_by(10_000)
    session.seek_by(-5_000)
    session.service(0.0)
    assert session.state.cursor_ms == FIRST_MS + 25_000
    assert session.head.version == version + 1  # one read, one swap of the head


def test_steps_pause_and_move_one_tick(session):
    session.service(0.0)
    session.seek_to(FIRST_MS + 100_000)
    session.play()
    session.step(1)
    assert not session.state.playing
    session.service(0.0)
    assert newest(session).ts_ms == FIRST_MS + 101_000
    session.step(-1)
    session.service(0.0)
    assert newest(session).ts_ms == FIRST_MS + 100_000
    session.step(-1000)
    session.service(0.0)
    assert session.state.cursor_ms == FIRST_MS


def test_playing_advances_at_speed_times_real_time(session, recorded):
    session.service(0.0)
    session.seek_to(FIRST_MS + 130_000)
    session.service(0.0)
    session.set_speed(4.0)
    session.play()
    session.service(10.0)  # the clock starts when play begins
    assert session.state.cursor_ms == FIRST_MS + 130_000
    session.service(12.5)  # 2.5 s at 4x: 10 ticks
    assert session.state.cursor_ms == FIRST_MS + 140_000 and session.state.playing
    appended = session.head.latest(11)
    assert [f.ts_ms for f in appended] == [FIRST_MS + i * 1000 for i in range(130, 141)]
    want = recorded[140]
    assert canonical("gpu", appended[-1].batches["gpu"]).equals(canonical("gpu", want.batches["gpu"]))
    assert "serving_hist" in appended[-1].batches


def test_playback_pauses_at_the_end_and_play_starts_over(session):
    session.service(0.0)
    session.seek_to(LAST_MS - 3_000)
    session.service(0.0)
    session.set_speed(16.0)
    session.play()
    session.service(0.0)
    session.service(1.0)
    assert session.state.cursor_ms == LAST_MS and not session.state.playing
    session.play()
    assert session.state.cursor_ms == FIRST_MS and session.state.playing


def test_speeds_step_along_the_list_and_stop_at_its_ends(session):
    seen = [session.state.speed]
    for _ in range(len(SPEEDS) + 2):
        session.faster()
        seen.append(session.state.speed)
    assert seen[-1] == 16.0 and sorted(set(seen)) == [s for s in SPEEDS if s >= 1.0]
    for _ in range(len(SPEEDS) + 2):
        session.slower()
    assert session.state.speed == 0.25
    with pytest.raises(ValueError, match="speed must be one of"):
        session.set_speed(3.0)


def test_listeners_hear_every_change(session):
    heard: list[ReplayState] = []
    session.add_listener(heard.append)
    session.seek_by(10_000)
    session.service(0.0)
    session.faster()
    assert heard[0].loading and not heard[-1].loading
    assert heard[-1].speed == 2.0 and heard[-1].cursor_ms == FIRST_MS + 10_000


def test_an_unreadable_store_pauses_the_player_with_one_line(tmp_path, store):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    with StoreReader(copy) as reader:
        session = ReplaySession(reader, Head())
        for parquet in copy.rglob("*.parquet"):
            parquet.unlink()
        failed = threading.Event()
        session.add_listener(lambda state: state.error and failed.set())
        session.start()
        try:
            assert failed.wait(30)
        finally:
            session.close()
    state = session.state
    assert state.error.startswith("cannot read the store") and "\n" not in state.error
    assert not state.playing and not state.loading
