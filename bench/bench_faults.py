"""Time from each simulated fault to the default screen naming it: every scenario, two seeds, 200x50 and
80x24. Prints the issue's table refilled (issue 13, item 7).

The real app (RackApp) runs under Textual's Pilot over the simulated rack polled by the real Poller and
AlertRecorder on a manual clock (tests/tui/live_rack.py): one tick is one simulated second, and after
each tick the screen is read once the app shows that tick. Times are simulated seconds after the
scenario's fault began (the simulator's fault_at), at 1 s resolution:

- looks wrong: the alert bar shows, or the problems panel lists a problem;
- right place: the problems panel or the alert bar names the fault's element as the simulator records
  it (scenario.fault): the GPU label, the link ('T13.G4 link 7' or 'L7'), the tray, or the server.

    .venv/bin/python bench/bench_faults.py [--seeds 7 1] [--after 120] [--scenario thermal ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "tui"))

from live_rack import LiveRack, until  # noqa: E402
from observed_app import ObservedRackApp  # noqa: E402

from collectors.rack import gpu_label  # noqa: E402
from collectors.sim.scenarios import SCENARIOS  # noqa: E402
from monitor.tui.widgets.alert_bar import AlertBar  # noqa: E402
from monitor.tui.widgets.problems_panel import ProblemsPanel  # noqa: E402

SIZES = ((200, 50), (80, 24))
FAULT_AT_S = 30.0
"""Time before the fault: the rack settles and the drift rule has its baseline (it needs 10 s)."""


@dataclass
class Outcome:
    """One run: seconds after the fault to each milestone (None: not within the run), and the text."""

    wrong_s: int | None = None
    place_s: int | None = None
    shown_by: str = ""


def places(live: LiveRack) -> tuple[str, ...]:
    """How the screen may name the fault's element, from the simulator's record of it."""
    scenario = live.rack.scenario
    fault = scenario.fault
    if fault is None:
        return ()
    servers = [live.rack.workload.instances[i].name for i in getattr(scenario, "instances", ())]
    if scenario.name == "endpoint-down":
        return (live.rack.workload.instances[fault.instance].name,)
    if fault.link is not None:
        label = gpu_label(fault.gpu)
        return (f"{label} link {fault.link}", f"{label} L{fault.link}")
    if fault.gpu is not None:
        return (gpu_label(fault.gpu),)
    return (f"T{fault.tray:02d}", *servers)


def visible_text(app: ObservedRackApp, widget_type: type) -> str:
    """A widget's text when it is on the screen (displayed, with room), else ''."""
    widget = app.query_one(widget_type)
    if not widget.display or widget.region.height == 0:
        return ""
    return str(widget.render())


async def run(scenario: str, seed: int, size: tuple[int, int], after_s: int) -> Outcome:
    """One scenario and seed at one size, until the place is named or `after_s` past the fault."""
    live = LiveRack(scenario, seed, fault_at=FAULT_AT_S)
    app = ObservedRackApp(live.head, interval=0)
    wanted = places(live)
    out = Outcome()
    try:
        async with app.run_test(size=size) as pilot:
            for tick in range(1, int(FAULT_AT_S) + after_s + 1):
                await live.tick()
                await until(pilot, lambda: app.snapshot.version == live.head.version, "the tick shown")
                await pilot.pause()
                since = tick - int(FAULT_AT_S)
                bar = visible_text(app, AlertBar)
                panel = visible_text(app, ProblemsPanel)
                listed = panel and not panel.startswith(("no problems", "waiting"))
                if (bar or listed) and out.wrong_s is None:
                    out.wrong_s = since
                    out.shown_by = (panel.splitlines()[0].strip() if listed else bar)[:70]
                if wanted and any(w in bar or w in panel for w in wanted):
                    out.place_s = since
                    out.shown_by = next(
                        line.strip()
                        for line in (panel + "\n" + bar).splitlines()
                        if any(w in line for w in wanted)
                    )[:70]
                    break
    finally:
        live.stop()
    return out


def span(values: list[int | None]) -> str:
    """'2-6 s', '3 s', or 'never' (with the count of runs that never got there)."""
    seen = [v for v in values if v is not None]
    if not seen:
        return "never"
    low, high = min(seen), max(seen)
    text = f"{low} s" if low == high else f"{low}-{high} s"
    missed = len(values) - len(seen)
    return f"{text} ({missed} never)" if missed else text


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 1])
    parser.add_argument("--after", type=int, default=120, help="seconds after the fault to wait at most")
    parser.add_argument("--scenario", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"simulated seconds after the fault began (fault at +{FAULT_AT_S:.0f} s), 1 s resolution")
    print("| scenario | size | something looks wrong | right place named | what showed it |")
    print("|---|---|---|---|---|")
    for scenario in args.scenario:
        for size in SIZES:
            runs = [await run(scenario, seed, size, args.after) for seed in args.seeds]
            where = "; ".join(r.shown_by for r in runs if r.shown_by) or "-"
            seeds = f"{len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''}"
            print(
                f"| {scenario} ({seeds}) | {size[0]}x{size[1]} | {span([r.wrong_s for r in runs])} | "
                f"{span([r.place_s for r in runs])} | {where} |",
                flush=True,
            )
    print(f"({time.monotonic() - started:.0f} s wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
