"""The problems panel on the default screen: the real app over the simulated rack (tests/tui/live_rack.py)
names each scenario's fault where the simulator put it, at the smallest and a large terminal, says when
the rack is healthy, and its keys open the fault's view."""

from __future__ import annotations

import pytest
from live_rack import FAULT_AT_S, LiveRack, until
from observed_app import ObservedRackApp

from collectors.rack import gpu_label
from monitor.tui.screens.gpu_detail import GpuDetailScreen
from monitor.tui.screens.nvlink import NvlinkScreen
from monitor.tui.screens.serving import ServingScreen
from monitor.tui.widgets.nvlink_matrix import NvlinkMatrixView
from monitor.tui.widgets.problems_panel import ProblemsPanel

SIZES = [(80, 24), (200, 50)]
TICKS = int(FAULT_AT_S) + 5
"""Five seconds past the fault: the issue's bound for naming it."""


def screen_text(app) -> str:
    """What the terminal shows, line by line."""
    return "\n".join("".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips())


def fault_place(live: LiveRack) -> str:
    """Where the simulator says it put the fault, as the rack names it."""
    scenario = live.rack.scenario
    fault = scenario.fault
    assert fault is not None
    if scenario.name == "endpoint-down":
        return live.rack.workload.instances[fault.instance].name
    if fault.link is not None:
        return f"{gpu_label(fault.gpu)} link {fault.link}"
    return gpu_label(fault.gpu)


class Seen:
    """What the test saw while the app ran: the screen's text and panel's before the keys, then where
    the keys led."""

    text: str = ""
    panel: str = ""
    screen: object = None
    selected: int = -1
    cursor: tuple[int, int] | None = None
    highlight: str = ""


async def run(scenario: str, size: tuple[int, int], keys: tuple[str, ...] = ()) -> tuple[LiveRack, Seen]:
    """Run the app over TICKS ticks of `scenario`, then press `keys`."""
    live = LiveRack(scenario)
    app = ObservedRackApp(live.head, interval=0)
    seen = Seen()
    try:
        async with app.run_test(size=size) as pilot:
            for _ in range(TICKS):
                await live.tick()
            await until(pilot, lambda: app.snapshot.version == live.head.version, "the last frame shown")
            await pilot.pause()
            seen.text = screen_text(app)
            seen.panel = str(app.query_one(ProblemsPanel).render())
            for key in keys:
                await pilot.press(key)
                await pilot.pause()
            await pilot.pause()
            seen.screen, seen.selected, seen.highlight = app.screen, app.selected, app.highlight_name
            if isinstance(app.screen, NvlinkScreen):
                view = app.screen.query_one(NvlinkMatrixView)
                seen.cursor = (view.gpu, view.link)
            return live, seen
    finally:
        live.stop()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scenario", ["gpu-lost", "nvlink-flap", "straggler", "endpoint-down"])
async def test_the_default_screen_names_the_fault_where_the_simulator_put_it(scenario, size):
    live, seen = await run(scenario, size)
    place = fault_place(live)
    assert place in seen.panel, seen.panel
    assert place in seen.text, seen.text  # on the screen, not only in the widget


async def test_a_healthy_rack_says_healthy_on_the_default_screen():
    live, seen = await run("steady", (200, 50))
    endpoints = len(live.rack.workload.instances)
    healthy = f"no problems: 72/72 GPUs, 1296/1296 links, {endpoints}/{endpoints} endpoints"
    assert healthy in seen.text, seen.text


async def test_x_then_o_opens_the_lost_gpus_detail():
    live, seen = await run("gpu-lost", (200, 50), ("x", "o"))
    assert isinstance(seen.screen, GpuDetailScreen)
    assert seen.selected == live.rack.scenario.fault.gpu


async def test_o_opens_the_nvlink_matrix_on_the_flapping_link():
    live, seen = await run("nvlink-flap", (200, 50), ("o",))
    fault = live.rack.scenario.fault
    assert isinstance(seen.screen, NvlinkScreen)
    assert seen.cursor == (fault.gpu, fault.link)


async def test_o_opens_the_serving_view_with_the_silent_servers_gpu_marked():
    live, seen = await run("endpoint-down", (200, 50), ("o",))
    inst = live.rack.workload.instances[live.rack.scenario.fault.instance]
    assert isinstance(seen.screen, ServingScreen)
    assert seen.highlight == inst.name


async def test_a_long_list_keeps_the_cursor_line_on_screen_and_counts_the_rest():
    from textual.app import App

    from monitor.view.problems import Problem, RackProblems, Rank

    class Panel(App):
        def compose(self):
            yield ProblemsPanel(id="problems")

    problems = tuple(Problem(Rank.ENDPOINT, "down", f"vllm-{i:02d}") for i in range(9))
    app = Panel()
    async with app.run_test(size=(80, 20)) as pilot:
        panel = app.query_one(ProblemsPanel)
        panel.show(RackProblems(problems, 72, 72, 1296, 1296, 63, 72, ts_ms=1))
        await pilot.pause()
        assert str(panel.render()).splitlines() == [
            *(f"  vllm-{i:02d} down" for i in range(4)),
            "  +5 more: x steps to them",
        ]
        for _ in range(7):  # the app's x: the worst first, then six more: vllm-06
            panel.step()
        await pilot.pause()
        lines = str(panel.render()).splitlines()
    assert lines == [
        "  vllm-03 down",
        "  vllm-04 down",
        "  vllm-05 down",
        "> vllm-06 down",
        "  +2 more: x steps to them",
    ]
