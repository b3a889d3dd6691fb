"""Run the live TUI over a set of sources: head + poller thread + RackApp, torn down in order."""

from __future__ import annotations

import os
from collections.abc import Sequence

from collectors.clock import Clock
from collectors.poller import Poller, Sink
from collectors.source import Source
from storage.head import Head


def run_live(
    sources: Sequence[Source],
    *,
    clock: Clock | None = None,
    interval: float = 1.0,
    title: str = "rack-monitor",
    subtitle: str = "",
    sinks: Sequence[Sink] = (),
    max_fps: int | None = None,
) -> None:
    """Poll `sources` every `interval` seconds in a thread and show the rack until the user quits.

    Collection never runs on the UI's event loop: the poller thread appends frames to the head and
    the app's worker waits on the head.
    """
    if max_fps is not None:
        # Textual reads TEXTUAL_FPS when it is imported, so this must come first.
        os.environ["TEXTUAL_FPS"] = str(max_fps)
    from monitor.tui.app import RackApp

    head = Head()
    poller = Poller(sources, head, interval=interval, clock=clock, sinks=sinks)
    app = RackApp(head, interval=interval, title=title, subtitle=subtitle)
    poller.start()
    try:
        app.run()
    finally:
        poller.stop()
