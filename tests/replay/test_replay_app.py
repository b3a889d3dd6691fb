"""The replay TUI under Pilot: every replay key moves the cursor or changes the speed, and the bar,
the totals and the heatmap all show the cursor's time; plus the replay bar's text at any width."""

from __future__ import annotations

import asyncio

import pytest

from monitor.replay import ReplayState
from monitor.tui.help_screen import HelpScreen
from monitor.tui.replay_app import GoToTimeScreen
from monitor.tui.widgets.heatmap import Heatmap
from monitor.tui.widgets.replay_bar import replay_bar_text
from monitor.view.model import clock_text
from tests.replay.conftest import END_S, SECONDS
from tests.replay.observed import replay_app

FIRST_MS = (END_S - SECONDS + 1) * 1000
AT_MS = FIRST_MS + 120_000
"""Where the Pilot tests start: 2025-06-15T15:05:21Z."""
SIZE = (120, 40)


def iso_of(ms: int) -> str:
    from monitor.timespec import iso

    return iso(ms)


@pytest.mark.parametrize(
    ("keys", "moved_ms"),
    [
        (["right_square_bracket"], 10_000),
        (["left_square_bracket"], -10_000),
        (["right_curly_bracket"], 60_000),
        (["left_curly_bracket"], -60_000),
        (["full_stop"], 1_000),
        (["comma"], -1_000),
        (["full_stop", "full_stop", "comma", "right_square_bracket"], 11_000),
    ],
    ids=["+10s", "-10s", "+1m", "-1m", "step", "back", "mixed"],
)
async def test_seek_and_step_keys_move_the_cursor(store, keys, moved_ms):
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=SIZE) as pilot:
        await app.settle(pilot)
        assert app.snapshot.ts_ms == AT_MS
        for key in keys:
            await pilot.press(key)
            await app.settle(pilot)
        want = AT_MS + moved_ms
        assert app.session.state.cursor_ms == want
        assert app.snapshot.ts_ms == want
        assert app.session.head.latest()[-1].ts_ms == want
        # The cursor's time is always on screen: the replay bar (ISO, UTC) and the heatmap's clock.
        assert iso_of(want) in app.bar_text
        assert app.query_one(Heatmap).border_subtitle == clock_text(want)


async def test_seeks_stop_at_the_ends_of_the_recording(store):
    app = replay_app(store, at="start")
    async with app.run_test(size=SIZE) as pilot:
        await app.settle(pilot)
        await pilot.press("left_curly_bracket")
        await app.settle(pilot)
        assert app.session.state.cursor_ms == FIRST_MS
        for _ in range(5):
            await pilot.press("right_curly_bracket")
        await app.settle(pilot)
        assert app.session.state.cursor_ms == END_S * 1000
        assert iso_of(END_S * 1000) in app.bar_text


async def test_speed_keys_change_the_speed_shown(store):
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=SIZE) as pilot:
        await app.settle(pilot)
        assert "1x" in app.bar_text
        await pilot.press("plus")
        await app.settle(pilot)
        assert app.session.state.speed == 2.0 and " 2x" in app.bar_text
        await pilot.press("equals_sign", "plus", "plus", "plus", "plus")
        await app.settle(pilot)
        assert app.session.state.speed == 16.0 and "16x" in app.bar_text
        for _ in range(8):
            await pilot.press("minus")
        await app.settle(pilot)
        assert app.session.state.speed == 0.25 and "0.25x" in app.bar_text


async def test_space_plays_and_pauses(store):
    app = replay_app(store, at="15:05:21", speed=16.0)
    async with app.run_test(size=SIZE) as pilot:
        await app.settle(pilot)
        assert "paused" in app.bar_text
        head = app.session.head
        version = head.version
        await pilot.press("space")
        assert app.session.state.playing
        # Playback appends frames as real time passes; wait for one instead of sleeping.
        assert await asyncio.to_thread(head.wait_for, version, 30.0) > version
        await pilot.press("space")
        assert not app.session.state.playing
        await app.settle(pilot)
        assert app.session.state.cursor_ms > AT_MS
        assert app.snapshot.ts_ms == app.session.state.cursor_ms
        assert "paused" in app.bar_text and iso_of(app.session.state.cursor_ms) in app.bar_text


async def test_j_jumps_to_a_time_and_refuses_bad_ones_in_one_line(store):
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=SIZE) as pilot:
        await app.settle(pilot)
        await pilot.press("j")
        await pilot.pause()
        assert isinstance(app.screen, GoToTimeScreen)
        await pilot.press(*"9:00", "enter")
        await pilot.pause()
        assert isinstance(app.screen, GoToTimeScreen)  # still asking
        error = str(app.screen.query_one("#goto-error").render())
        assert "outside the recording" in error
        await pilot.press(*["backspace"] * 4, *"15:04:07", "enter")
        await app.settle(pilot)
        assert not isinstance(app.screen, GoToTimeScreen)
        assert app.session.state.cursor_ms == 1_749_999_847_000
        assert "2025-06-15T15:04:07Z" in app.bar_text


async def test_escape_leaves_go_to_without_moving(store):
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=SIZE) as pilot:
        await app.settle(pilot)
        await pilot.press("j", *"start", "escape")
        await app.settle(pilot)
        assert not isinstance(app.screen, GoToTimeScreen)
        assert app.session.state.cursor_ms == AT_MS


async def test_views_work_in_replay_as_live(store):
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=(200, 50)) as pilot:
        await app.settle(pilot)
        snap = app.snapshot
        assert snap.totals.gpus_ok == 72 and snap.totals.power_kw and snap.totals.nvlink_tbps
        assert snap.totals.tokens_per_s  # from the serving rows read back
        assert len(snap.power_history_kw) > 100  # the history window was read with the cursor
        await pilot.press("p", "down", "right")  # the live keys still work
        await pilot.pause()
        assert app.metric.name == "power" and app.selected == 5


async def test_help_lists_the_replay_keys(store):
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=(100, 50)) as pilot:
        await app.settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        listed = {b.key for b in app.screen.bindings}
        for key in ("space", "full_stop", "comma", "right_square_bracket", "left_square_bracket"):
            assert key in listed
        for key in ("right_curly_bracket", "left_curly_bracket", "j", "plus", "minus"):
            assert key in listed


# -- the bar's text -----------------------------------------------------------------------------

STATE = ReplayState(
    cursor_ms=FIRST_MS + 100_000, first_ms=FIRST_MS, last_ms=END_S * 1000, speed=0.25, playing=True
)


@pytest.mark.parametrize("width", [40, 80, 120, 200])
def test_bar_keeps_state_speed_and_cursor_first(width):
    text = replay_bar_text(STATE, width)
    assert text.plain.startswith("▶ playing 0.25x  2025-06-15T15:05:01Z")
    assert text.cell_len <= max(width, 38)


def test_bar_adds_track_range_and_hint_as_room_allows():
    narrow, wide = replay_bar_text(STATE, 80).plain, replay_bar_text(STATE, 200).plain
    assert "●" in narrow and "15:03:21Z–15:06:40Z" in narrow and "space play" not in narrow
    assert "space play" in wide
    assert replay_bar_text(STATE, 200).cell_len <= 200


def test_bar_says_paused_and_errors():
    from dataclasses import replace

    paused = replace(STATE, playing=False, error="cannot read the store: gone")
    text = replay_bar_text(paused, 120).plain
    assert text.startswith("❚❚ paused") and text.endswith("cannot read the store: gone")


def test_every_live_key_does_the_same_in_replay():
    from monitor.tui.app import RackApp
    from monitor.tui.replay_app import ReplayApp

    replay = {b.id: (b.key, b.action) for b in ReplayApp.BINDINGS if b.id}
    for b in RackApp.BINDINGS:
        if b.id:
            assert replay[b.id] == (b.key, b.action), b.id
    keys = [b.key for b in ReplayApp.BINDINGS]
    assert len(keys) == len(set(keys))  # no key does two things


async def test_the_live_skew_key_opens_the_skew_view_in_replay(store):
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=SIZE) as pilot:
        await app.settle(pilot)
        await pilot.press("g")
        await pilot.pause()
        assert type(app.screen).__name__ == "SkewScreen"
        await pilot.press("right_square_bracket")  # replay keys work over the views too
        await pilot.pause()
        await pilot.press("escape")
        await app.settle(pilot)
        assert app.session.state.cursor_ms == AT_MS + 10_000
