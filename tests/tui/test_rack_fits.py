"""The whole rack is on screen at every size, with the alert bar showing: the real app over the simulated
rack playing gpu-lost (tests/tui/live_rack.py), read back from the screen Textual composes.

The lost GPU is on T18, the bottom tray: the row that fell off an 80x24 screen when the alert bar came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from live_rack import LiveRack, until
from observed_app import ObservedRackApp
from screen_text import screen_lines

from collectors.rack import gpu_label
from monitor.tui.widgets.alert_bar import AlertBar
from monitor.tui.widgets.heat_rows import HeatGeometry
from monitor.tui.widgets.heatmap import Heatmap

SIZES = [(80, 24), (120, 40), (200, 50), (300, 80)]
TICKS = 6
"""Past the fault (2 s) and the XID alert the recorder raises for it a tick later."""
TRAY = re.compile(r"(?:^|[│ ])(T\d\d)\b")


@dataclass
class Seen:
    """What the screen showed once the newest frame was drawn (read while the app runs)."""

    lines: list[str]
    geometry: HeatGeometry
    top: int
    selected: int
    serving_height: int


async def lost_rack_app(live: LiveRack, size: tuple[int, int], pilot_keys: tuple[str, ...] = ()) -> Seen:
    """Run the app over TICKS ticks of the live rack, press `pilot_keys`, and read the screen."""
    app = ObservedRackApp(live.head, interval=0)
    async with app.run_test(size=size) as pilot:
        for _ in range(TICKS):
            await live.tick()
        await until(pilot, lambda: app.snapshot.version == live.head.version, "the last frame shown")
        await until(pilot, lambda: app.query_one(AlertBar).display, "the alert bar")
        for key in pilot_keys:
            await pilot.press(key)
        await pilot.pause()
        heatmap = app.query_one(Heatmap)
        serving = app.query_one("#serving")
        return Seen(screen_lines(app), heatmap.geometry, heatmap.top, app.selected, serving.region.height)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_tray_and_the_lost_cell_are_on_screen_with_an_alert_showing(size):
    live = LiveRack("gpu-lost")
    try:
        seen = await lost_rack_app(live, size)
    finally:
        live.stop()
    fault = live.rack.scenario.fault
    assert fault is not None and fault.gpu is not None
    lost = gpu_label(fault.gpu)
    assert lost.startswith("T18"), "seed 7 loses a GPU of the bottom tray"
    lines = seen.lines
    assert len(lines) == size[1]
    assert "ALERT" in lines[1]  # the bar that used to push T18 off an 80x24 screen
    trays = [m.group(1) for line in lines for m in TRAY.finditer(line[: len(line) // 2 + 40])]
    assert sorted(set(trays)) == [f"T{t:02d}" for t in range(1, 19)]
    t18 = next(line for line in lines if re.search(r"(?:^|│)T18 ", line))
    # the lost GPU's cell, in its module's column of T18's row (G3 of 4)
    cells = t18.split("│")[1 if t18.startswith("│") else 0].replace("[", " ").replace("]", " ").split()
    assert cells[0] == "T18" and cells[int(lost[-1])] == "LOST", t18
    assert any(line.lstrip("│").startswith(("SW ", "SW1 ")) for line in lines), "the switch trays"
    assert seen.top == 0  # nothing scrolled away


async def test_big_terminals_give_cells_more_lines_and_the_serving_table_its_height():
    live = LiveRack("gpu-lost")
    try:
        seen = await lost_rack_app(live, (300, 80))
    finally:
        live.stop()
    lines = seen.lines
    shown_servers = sum(1 for line in lines if re.search(r"│ vllm-\d\d ", line))
    assert seen.geometry.lines == 3 and seen.geometry.expanded
    # 3 lines a tray: the value, then four more figures of the same GPU under it
    first = next(i for i, line in enumerate(lines) if re.search(r"│T01 ", line))
    assert re.search(r"\d+W \d+C", lines[first + 1]) and "MHz" in lines[first + 2]
    assert seen.serving_height == 77  # every row between the alert bar and the key line
    assert shown_servers == len(live.rack.workload.instances) == 72


async def test_a_screen_too_short_for_the_rack_scrolls_with_the_cursor():
    live = LiveRack("gpu-lost")
    try:
        seen = await lost_rack_app(live, (80, 18), ("down",) * 17)
    finally:
        live.stop()
    assert seen.top > 0
    assert any(re.match(r"T18 .*LOST", line) for line in seen.lines), "the cursor's tray came into view"
    assert seen.selected == 68  # T18.G1
