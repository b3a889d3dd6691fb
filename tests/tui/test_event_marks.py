"""Every event kind has a letter under the history charts and a GPU's recovery has a colour in report.html.

The recovery comes from the real NVML collector over a simulated tray (lost, then answering again), stored
in a real store, read back by the builder (history chart marks) and by report.html.
"""

from __future__ import annotations

import re
from pathlib import Path

from collectors.clock import SimClock
from collectors.nvml import NvmlCollector
from collectors.sim import SimRack
from monitor.report_html import render_report
from monitor.timespec import Window
from monitor.tui.widgets.history_chart import EVENT_MARKS, MARK_RANK, mark_row
from monitor.view.builder import build_snapshot
from storage.frame import Frame
from storage.reader import StoreReader
from storage.schemas import EventKind
from storage.writer import StoreWriter

START = 1_700_000_000.0


def event_kinds() -> set[str]:
    """Every EventKind value, read off the class (so a kind added later is checked too)."""
    return {v for k, v in vars(EventKind).items() if k.isupper() and isinstance(v, str)}


def test_every_event_kind_has_a_letter_that_ranks() -> None:
    missing = event_kinds() - set(EVENT_MARKS)
    assert not missing, f"event kinds without a history-chart letter: {sorted(missing)}"
    assert set(EVENT_MARKS.values()) <= set(MARK_RANK)


def lost_and_back(tmp_path: Path) -> tuple[Path, list[Frame]]:
    """Tray 3's frames, also stored: NVML index 0 lost at 2 s, answering again at its first probe (7 s)."""
    clock = SimClock(start=START)
    rack = SimRack(seed=5, clock=clock)
    tray = rack.trays[2]
    gpu = tray.gpu_indices[0]
    root = tmp_path / "store"
    frames = []
    with NvmlCollector(tray) as collector, StoreWriter(root, compaction="off") as writer:
        for second in range(1, 10):
            clock.advance(START + second - clock.now())
            if second == 2:
                rack.lose_gpu(gpu)
            if second == 5:
                rack.recover_gpu(gpu)
            frames.append(collector.poll(round(clock.now() * 1000)))
            writer.append(frames[-1])
    return root, frames


def test_recovery_is_marked_r_in_the_history_chart_and_green_in_report_html(tmp_path: Path) -> None:
    root, frames = lost_and_back(tmp_path)
    with StoreReader(root) as reader:
        window = Window(int(START * 1000), int((START + 10) * 1000))
        html = render_report(reader, window, title="tray 3")
    events = build_snapshot(frames).events
    kinds = [e.kind for e in reversed(events) if e.kind in (EventKind.GPU_LOST, EventKind.GPU_RECOVERED)]
    assert kinds == [EventKind.GPU_LOST, EventKind.GPU_RECOVERED]
    # One column per second from 1 s to 10 s: lost at 2 s (its XID 79 outranks the loss in that column),
    # probed back at 7 s (5 s back-off).
    marks = mark_row(events, int((START + 1) * 1000), int((START + 10) * 1000), 9)
    assert marks == "·X····R··", marks
    lines = re.findall(r'<line [^>]*stroke="(#[0-9a-f]+)"[^>]*><title>[^<]*\b(gpu_\w+)\b', html)
    assert ("#2a2", "gpu_recovered") in lines and ("#d00", "gpu_lost") in lines, lines
