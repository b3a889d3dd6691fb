"""Regenerate screenshots/*.svg: the demo's views on a seeded simulated rack, rendered headless.

Run: .venv/bin/python screenshots/make.py [fleet]   (a few minutes; deterministic for the seed)
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.alert_recorder import AlertRecorder
from collectors.alert_rules import AlertRules
from collectors.clock import SimClock
from collectors.nvml import NvmlCollector
from collectors.poller import Poller
from collectors.rack import GPUS_PER_TRAY
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from collectors.source import Source
from monitor.commands.local_nvml import describe
from monitor.tui.app import RackApp
from monitor.view.layout import RACK, host_layout
from storage.head import Head

HERE = Path(__file__).resolve().parent
START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()
SEED = 7
TICKS = 150
"""Seconds of simulated history before the picture: the scenarios' faults start at 60 s."""


@dataclass(frozen=True)
class Shot:
    """One screenshot: a scenario, a terminal size and the keys pressed before taking it."""

    name: str
    scenario: str
    size: tuple[int, int]
    keys: tuple[str, ...] = ()
    to_fault: bool = False
    """Move the cursor onto the scenario's faulty GPU before pressing `keys`."""
    host: bool = False
    """Local mode on an 8-GPU HGX H100 host without platform info (SimRack.hgx_host) instead of the rack."""


SHOTS = [
    Shot("rack-200x50", "gpu-lost", (200, 50)),
    Shot("rack-80x24", "gpu-lost", (80, 24)),
    Shot("rack-120x40", "gpu-lost", (120, 40)),
    Shot("rack-300x80", "gpu-lost", (300, 80)),
    Shot("rack-straggler-deviation-200x50", "straggler", (200, 50), ("c", "d")),
    Shot("rack-thermal-temp-200x50", "thermal", (200, 50), ("t",)),
    Shot("rack-nvlink-flap-errors-200x50", "nvlink-flap", (200, 50), ("e",)),
    Shot("nvlink-matrix-flap-200x50", "nvlink-flap", (200, 50), ("l", "e")),
    Shot("nvlink-matrix-80x24", "nvlink-flap", (80, 24), ("l",)),
    Shot("serving-endpoint-down-200x50", "endpoint-down", (200, 50), ("s",)),
    Shot("rack-straggler-200x50", "straggler", (200, 50), ("c",)),
    Shot("gpu-detail-straggler-200x50", "straggler", (200, 50), ("enter",), to_fault=True),
    Shot("events-gpu-lost-200x50", "gpu-lost", (200, 50), ("v",)),
    Shot("local-hgx-8gpu-120x30", "steady", (120, 30), host=True),
]


def filled_head(rack: SimRack, source: Source | None = None) -> Head:
    """A head holding TICKS seconds of the seeded simulated rack, with the alerts `monitor demo` raises.

    The stack is run_live's: the poller ticks the rack (or `source` over it) and the AlertRecorder (its
    sink and a source), so the pictures show the alert bar an operator would see.
    """
    head = Head()
    recorder = AlertRecorder(AlertRules())
    sources = [source or SimRackFrames(rack), recorder]
    poller = Poller(sources, head, clock=rack.clock, sinks=[recorder], deadline=60)
    try:
        for tick in range(TICKS):
            if source is not None:  # an NVML collector reads the rack at its clock's now
                rack.clock.advance(START + tick - rack.clock.now())
            poller.tick(round((START + tick) * 1000))
    finally:
        poller.stop()
    return head


def cursor_keys(rack: SimRack) -> tuple[str, ...]:
    """Arrow keys that move the heatmap cursor from the first GPU onto the scenario's faulty one."""
    fault = rack.scenario.fault
    if fault is None or fault.gpu is None:
        return ()
    return ("down",) * (fault.gpu // GPUS_PER_TRAY) + ("right",) * (fault.gpu % GPUS_PER_TRAY)


async def take(shot: Shot) -> str:
    """Run the app headless over the shot's rack and return the SVG."""
    rack = SimRack(seed=SEED, scenario=shot.scenario, clock=SimClock(start=START), start=START)
    if shot.host:  # what `monitor` with no config shows on this host: its own 8 GPUs, no rack
        collector = NvmlCollector(rack.hgx_host(), name="hgx-01")
        head, layout = filled_head(rack, collector), host_layout(collector.gpus)
        title, subtitle = "rack-monitor", f"hgx-01 · {describe(collector)} · simulated"
    else:
        head, layout = filled_head(rack), RACK
        title = "rack-monitor demo"
        subtitle = f"simulated GB300 NVL72 · scenario {shot.scenario} · seed {SEED}"
    app = RackApp(head, title=title, subtitle=subtitle, layout=layout)
    async with app.run_test(size=shot.size) as pilot:
        for _ in range(200):
            if app.frames_applied:
                break
            await pilot.pause(0.05)
        for key in (*cursor_keys(rack), *shot.keys) if shot.to_fault else shot.keys:
            await pilot.press(key)
        await pilot.pause()
        return app.export_screenshot(title=f"rack-monitor · {shot.name}")


def write_atomically(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a reader never sees half a picture."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main() -> None:
    """Write every shot (`fleet` as the only argument: the fleet screen's shots only)."""
    from fleet_shots import FLEET_SHOTS, take_fleet

    for shot in SHOTS if sys.argv[1:] != ["fleet"] else []:
        svg = asyncio.run(take(shot))
        write_atomically(HERE / f"{shot.name}.svg", svg)
        print(f"screenshots/{shot.name}.svg")
    for fleet_shot in FLEET_SHOTS:
        svg = asyncio.run(take_fleet(fleet_shot, START, SEED))
        write_atomically(HERE / f"{fleet_shot.name}.svg", svg)
        print(f"screenshots/{fleet_shot.name}.svg")


if __name__ == "__main__":
    main()
