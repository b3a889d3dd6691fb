"""A straggler shows on the default rack screen: the real app over the simulated rack, on a manual clock.

The stack is run_live's (AlertRecorder as the poller's sink and source, the head, RackApp) with the
simulated rack's fast frame path as the source, ticked by hand so the alert's minimum duration passes
in a fraction of a second of real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from observed_app import ObservedRackApp
from tui_frames import T0_MS

from collectors.alerts import AlertRecorder, AlertRules
from collectors.clock import SimClock
from collectors.poller import Poller
from collectors.rack import GPUS, gpu_label, gpu_place
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from monitor.tui.widgets.alert_bar import AlertBar
from monitor.tui.widgets.heatmap import Heatmap
from storage.head import Head

T0_S = T0_MS / 1000
FAULT_AT_S = 2.0
TICKS = 20
"""Past the fault (2 s), the straggler rule's minimum duration (10 s) and the recorder's one-tick lag."""
SIZE = (240, 40)
"""Wide enough that the alert bar's one line holds both straggler alerts (clock and tokens/s)."""


class LiveRack:
    """The simulated rack, polled through the real Poller and AlertRecorder on a manual clock."""

    def __init__(self, scenario: str, seed: int = 7) -> None:
        self.clock = SimClock(T0_S)
        self.rack = SimRack(seed, scenario, self.clock, start=T0_S, fault_at=FAULT_AT_S)
        self.head = Head()
        recorder = AlertRecorder(AlertRules())  # the defaults, as `monitor demo` runs
        # A generous deadline: a tick returns as soon as its sources answer, however busy the machine.
        self.poller = Poller(
            [SimRackFrames(self.rack), recorder], self.head, clock=self.clock, sinks=[recorder], deadline=60
        )

    async def tick(self) -> None:
        """Advance the clock one second and record one frame (off the app's event loop)."""
        self.clock.advance(1.0)
        await asyncio.to_thread(self.poller.tick, round(self.clock.now() * 1000))

    def stop(self) -> None:
        self.poller.stop()


async def until(pilot, done: Callable[[], bool], what: str) -> None:
    """Wait (bounded, not timed) until `done()`; the snapshot is built in a worker thread."""
    for _ in range(3000):
        await pilot.pause()
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


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
