"""A straggler shows on the default rack screen: the real app over the simulated rack, on a manual clock
(tests/tui/live_rack.py), until the alert's minimum duration has passed."""

from __future__ import annotations

from collections.abc import Callable

from live_rack import LiveRack, until
from observed_app import ObservedRackApp

from collectors.rack import GPUS, gpu_label, gpu_place
from collectors.sim import SimRack
from monitor.tui.widgets.alert_bar import AlertBar
from monitor.tui.widgets.heatmap import Heatmap

TICKS = 20
"""Past the fault (2 s), the straggler rule's minimum duration (10 s) and the recorder's one-tick lag."""
SIZE = (240, 40)
"""Wide enough that the alert bar's one line holds both straggler alerts (clock and tokens/s)."""


def bar_text(app) -> str:
    bar = app.query_one(AlertBar)
    return str(bar.render()) if bar.display else ""


def heatmap_cell(app, gpu: int) -> str:
    """The rendered text of `gpu`'s cell in its compute tray's heatmap row."""
    tray, module = gpu_place(gpu)
    heatmap = app.query_one(Heatmap)
    y = next(i for i, r in enumerate(heatmap.rows) if r.kind == "compute" and r.trays == (tray,))
    # The selected cell is drawn '[ 2070 ]': drop the brackets, keep the figures.
    cells = heatmap.render_line(y).text.replace("[", " ").replace("]", " ").split()
    assert cells[0] == f"T{tray:02d}" and len(cells) == 5, cells
    return cells[module]


async def play(scenario: str, *, configure: Callable[[SimRack], None] | None = None):
    """Run the app over TICKS ticks of `scenario`: (the live rack, the alert bar's text, each clock cell)."""
    live = LiveRack(scenario)
    if configure is not None:
        configure(live.rack)
    app = ObservedRackApp(live.head, interval=0)
    try:
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(TICKS):
                await live.tick()
            await until(pilot, lambda: app.snapshot.version == live.head.version, "the last frame shown")
            await pilot.press("c")
            await pilot.pause()
            assert app.metric.name == "clock"
            return live, bar_text(app), {g: heatmap_cell(app, g) for g in range(GPUS)}
    finally:
        live.stop()


async def test_a_straggler_gpu_is_named_on_the_alert_bar_with_the_clock_its_cell_shows():
    live, bar, cells = await play("straggler")
    fault = live.rack.scenario.fault
    assert fault is not None and fault.gpu is not None
    label = gpu_label(fault.gpu)
    # The simulator's own clock for the braked GPU (independent of the alert engine and the view).
    truth_mhz = live.rack.gpus[fault.gpu].sm_mhz
    assert cells[fault.gpu] == f"{truth_mhz}"
    assert f"{label} straggler: SM clock {cells[fault.gpu]} MHz" in bar, bar
    # Its server's tokens/s fell with it: the tokens/s rule names the server and the GPU.
    server = live.rack.workload.instances[fault.instance].name
    assert f"{server} straggler:" in bar and f"(on {label})" in bar, bar
    assert bar.startswith("! 2 ALERTS"), bar  # nothing else on the rack is named


async def test_a_steady_rack_raises_no_straggler_alert():
    _, bar, _ = await play("steady")
    assert bar == ""  # the bar is hidden: no alert of any kind on a healthy rack


async def test_a_gpu_slow_at_full_clock_is_named_by_its_servers_tokens_per_second():
    # One server does 40 % less work per GPU while its clocks stay where its peers' are (e.g. a degraded
    # HBM stack): the clock rule cannot see it, the tokens/s rule must.
    slow = 30

    def configure(rack: SimRack) -> None:
        rack.workload.instances[slow].efficiency = 0.6

    live, bar, cells = await play("steady", configure=configure)
    inst = live.rack.workload.instances[slow]
    gpu = inst.gpus[0]
    peers = sorted(int(cells[g]) for g in range(GPUS) if g != gpu)
    assert int(cells[gpu]) >= peers[len(peers) // 2] * 0.9  # its clock is not low
    assert f"{gpu_label(gpu)} straggler" not in bar
    assert f"{inst.name} straggler:" in bar and f"(on {gpu_label(gpu)})" in bar, bar
    # The figures quoted: 0.6 of a healthy server's rate, as configured (peers differ by up to 3 %).
    quoted = bar.split(f"{inst.name} straggler: ")[1]
    slow_rate = float(quoted.split(" tok/s per GPU")[0].replace(",", ""))
    median = float(quoted.split(" vs ")[1].split(" rack median")[0].replace(",", ""))
    assert 0.55 < slow_rate / median < 0.65, quoted
