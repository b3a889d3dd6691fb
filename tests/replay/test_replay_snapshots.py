"""SVG snapshots of the replay view at 80x24 and 200x50: a fixed-seed store at a fixed, paused cursor."""

from __future__ import annotations

import pytest

from tests.replay.observed import replay_app


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_replay_view(snap_compare, store, size):
    app = replay_app(store, at="15:05:31", speed=4.0)

    async def run_before(pilot) -> None:
        await app.settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_go_to_screen(snap_compare, store):
    app = replay_app(store, at="15:05:31")

    async def run_before(pilot) -> None:
        await app.settle(pilot)
        await pilot.press("j", *"14:00", "enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
