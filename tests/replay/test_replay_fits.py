"""Replay's rack screen is the live one: every tray on screen at every size, and `d` (deviation mode)
points at the recorded straggler as it does live."""

from __future__ import annotations

import re

import pytest

from monitor.tui.widgets.heatmap import Heatmap
from tests.replay.observed import replay_app
from tests.tui.screen_text import screen_lines

SIZES = [(80, 24), (120, 40), (200, 50), (300, 80)]


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_tray_is_on_the_replay_screen(store, size):
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=size) as pilot:
        await app.settle(pilot)
        lines = screen_lines(app)
        top = app.query_one(Heatmap).top
    trays = {m.group(1) for line in lines for m in re.finditer(r"(?:^|│)(T\d\d) ", line)}
    assert trays == {f"T{t:02d}" for t in range(1, 19)}
    assert any(re.search(r"(?:^|│)SW1? ", line) for line in lines)
    assert top == 0


async def test_deviation_mode_names_the_recorded_straggler(store):
    app = replay_app(store, at="15:05:21")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.settle(pilot)
        await pilot.press("c", "d")
        await pilot.pause()
        frame = app.query_one(Heatmap).frame
        snapshot = app.snapshot
    clocks = {g.index: g.values["clock"] for g in snapshot.gpus if g.values.get("clock") is not None}
    slowest = min(clocks, key=clocks.__getitem__)
    far = {g for g, v in frame.main.items() if v is not None and abs(v) > 20}
    assert frame.deviation and far == {slowest}
