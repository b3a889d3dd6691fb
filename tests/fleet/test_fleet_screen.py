"""The fleet screen on `monitor sim --racks 4` with a GPU lost on one rack: that row turns red and goes
first; enter opens that rack's views, which show the fault; escape comes back to the fleet.

The racks are real simulated racks scraped over loopback HTTP by the fleet's own pollers (tests/fleet/
live_fleet.py); which GPU is lost comes from the simulator's scenario, not from the code under test.
"""

from __future__ import annotations

import pytest

from collectors.rack import gpu_label
from monitor.tui.fleet_app import FleetApp
from monitor.tui.screens.fleet import FleetScreen
from monitor.view.fleet_row import Health
from tests.fleet.live_fleet import FAULT_AT_S, LiveFleet
from tests.pilot_wait import until
from tests.tui.screen_text import screen_lines

FAULTY = "rack03"


@pytest.fixture
def live_fleet():
    """Four racks, gpu-lost on rack03 only."""
    fleet = LiveFleet(4, f"gpu-lost@{FAULTY}")
    yield fleet
    fleet.stop()


def _table_lines(app: FleetApp) -> list[str]:
    """The fleet table's data rows as the screen shows them (after the summary and header lines)."""
    return [line.strip() for line in screen_lines(app)[2:6]]


async def _tick_until_rows(pilot, fleet: LiveFleet, app: FleetApp, ticks: int) -> None:
    for _ in range(ticks):
        await fleet.tick()
    newest = round(fleet.clock.now() * 1000)
    await until(
        pilot,
        lambda: all(r.ts_ms == newest for r in app.fleet_screen.rows.values()),
        "every rack's row at the newest tick",
    )


async def test_fault_row_is_red_first_and_opens(live_fleet: LiveFleet) -> None:
    app = FleetApp(live_fleet.fleet, fleet_name="sim fleet", title="sim fleet")
    async with app.run_test(size=(160, 40)) as pilot:
        assert isinstance(app.screen, FleetScreen)
        await _tick_until_rows(pilot, live_fleet, app, 3)  # before the fault: no rack is critical
        rows = app.fleet_screen.rows
        assert [r for r in rows.values() if r.health is Health.CRITICAL] == []
        assert all(r.gpus_ok == 72 and r.power_kw.whole for r in rows.values())

        await _tick_until_rows(pilot, live_fleet, app, int(FAULT_AT_S))  # past the fault
        lost = gpu_label(live_fleet.fault_gpu(FAULTY))
        row = app.fleet_screen.rows[FAULTY]
        assert row.health is Health.CRITICAL
        assert row.gpus_ok == 71
        assert row.worst is not None and row.worst.place == lost
        others = [r for name, r in app.fleet_screen.rows.items() if name != FAULTY]
        assert all(r.health is not Health.CRITICAL and r.gpus_ok == 72 for r in others)
        # Worst first: the faulty rack is the top row, marked CRIT (the word) and red (the colour).
        assert app.fleet_screen.sorted_names()[0] == FAULTY
        top = _table_lines(app)[0]
        assert top.startswith(FAULTY) and "CRIT" in top and lost in top
        table = app.fleet_screen.query_one("#fleet-table")
        assert all("red" in str(cell.style) for cell in table.get_row(FAULTY))
        assert not any("red" in str(cell.style) for cell in table.get_row(others[0].name))

        await pilot.press("enter")  # the cursor is on the top row: the worst rack opens
        await until(pilot, lambda: app.open_rack_name == FAULTY and app.frames_applied > 0, "rack open")
        await until(
            pilot,
            lambda: any(lost in line and "GPU lost" in line for line in screen_lines(app)),
            "the rack view's problems panel names the lost GPU",
        )
        assert not isinstance(app.screen, FleetScreen)
        assert screen_lines(app)[0].lstrip().startswith(FAULTY)

        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "back on the fleet")
        assert _table_lines(app)[0].startswith(FAULTY)


async def test_sort_key_cycles_orders(live_fleet: LiveFleet) -> None:
    app = FleetApp(live_fleet.fleet, fleet_name="sim fleet", title="sim fleet")
    async with app.run_test(size=(160, 40)) as pilot:
        await _tick_until_rows(pilot, live_fleet, app, 3)
        assert app.fleet_screen.order == "worst"
        await pilot.press("o")
        assert app.fleet_screen.order == "name"
        await until(
            pilot,
            lambda: app.fleet_screen.sorted_names() == ["rack01", "rack02", "rack03", "rack04"],
            "sorted by name",
        )
        await pilot.press("o")  # power, highest first: as the rows' own figures order them
        rows = app.fleet_screen.rows
        want = sorted(rows, key=lambda n: -(rows[n].power_kw.value or 0))
        await until(pilot, lambda: app.fleet_screen.sorted_names() == want, "sorted by power")
        assert "sorted by power" in screen_lines(app)[0]
        await pilot.press("l")  # a rack view's key does nothing on the fleet screen: no rack is open
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("question_mark")
        await until(pilot, lambda: any("back to this screen" in line for line in screen_lines(app)), "help")
        assert not isinstance(app.screen, FleetScreen)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), "help closed")
