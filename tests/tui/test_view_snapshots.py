"""SVG snapshots of each view (fixed frames and timestamps): 80x24, 200x50, and 16 colours."""

from __future__ import annotations

import asyncio

import pytest
from observed_app import ObservedRackApp
from tui_frames import LOST_GPU
from view_frames import sim_head


def snapshot_app(head, key: str, *, theme: str | None = None, before=None):
    """The app over `head`, and a run_before that opens a view by `key` and waits for its first model."""
    app = ObservedRackApp(head, interval=0, title="rack-monitor", subtitle="test rack")

    async def run_before(pilot) -> None:
        await app.next_snapshot(pilot)
        if theme:
            app.theme = theme
        if before:
            before(app)
        await pilot.press(key)
        for _ in range(400):
            await pilot.pause()
            if getattr(app.screen, "models_shown", 0):
                break
            await asyncio.sleep(0.01)
        await pilot.pause()

    return app, run_before


@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=["80x24", "200x50"])
def test_nvlink_matrix(snap_compare, head, size):
    app, run_before = snapshot_app(head, "l")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_nvlink_matrix_16_colours(snap_compare, head):
    app, run_before = snapshot_app(head, "l", theme="ansi-dark")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_rack_view_16_colours(snap_compare, head):
    app, run_before = snapshot_app(head, "p", theme="ansi-dark")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_serving(snap_compare):
    app, run_before = snapshot_app(sim_head("straggler", 12), "s")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_gpu_detail(snap_compare, head):
    app, run_before = snapshot_app(head, "enter", before=lambda a: setattr(a, "selected", LOST_GPU))
    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)


def test_events(snap_compare, head):
    app, run_before = snapshot_app(head, "v")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
