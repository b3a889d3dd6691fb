"""SVG snapshots of the rack view at 80x24 and 200x50 (fixed frames, fixed timestamps, no clocks)."""

from __future__ import annotations

import pytest
from observed_app import ObservedRackApp


def app_and_wait(head):
    """The app over `head`, and a run_before that waits for its first snapshot to be drawn."""
    app = ObservedRackApp(head, interval=0, title="rack-monitor", subtitle="test rack")

    async def run_before(pilot) -> None:
        await app.next_snapshot(pilot)

    return app, run_before


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_rack_view(snap_compare, head, size):
    app, run_before = app_and_wait(head)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_power_metric_with_the_lost_gpu_selected(snap_compare, head, size):
    app, wait = app_and_wait(head)

    async def run_before(pilot) -> None:
        await wait(pilot)
        await pilot.press("p", *["down"] * 15, "right")

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_help_screen(snap_compare, head):
    app, wait = app_and_wait(head)

    async def run_before(pilot) -> None:
        await wait(pilot)
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
