"""The snapshot worker's loop: follow the head and turn each new version into a snapshot off the event loop.

RackApp runs `follow_head` in a thread worker (textual.work); it posts FrameReady / ServingReady /
SnapshotFailed (monitor.tui.messages, monitor.tui.widgets.serving_panel) back to the app, whose
post_message is safe to call from another thread. Kept apart from the app so the loop reads in one
place: how it waits, how it caps the redraw rate, and how it stops when the worker is cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.message import Message
from textual.worker import Worker

from monitor.tui.messages import FrameReady, SnapshotFailed
from monitor.tui.widgets.serving_panel import ServingReady
from monitor.view.builder import SnapshotBuilder
from monitor.view.layout import GpuLayout
from monitor.view.serving import ServingBuilder
from storage.head import Head

WAIT_S = 0.25
"""The longest the worker blocks on the head before it checks whether it was cancelled."""


def follow_head(
    head: Head,
    worker: Worker[None],
    post: Callable[[Message], bool],
    *,
    layout: GpuLayout,
    interval: float,
) -> None:
    """One snapshot per new head version, at most one per `interval` seconds, until `worker` is cancelled.

    Args:
        head: the frames to follow.
        worker: the thread worker running this loop; its cancellation ends the loop.
        post: the app's post_message.
        layout: the GPUs that exist (monitor.view.layout).
        interval: the shortest time between two snapshots, in seconds.
    """
    builder = SnapshotBuilder(layout=layout)
    serving_builder = ServingBuilder()
    seen = 0
    last_build = float("-inf")
    while not worker.is_cancelled:
        version = head.wait_for(seen, timeout=WAIT_S)
        if worker.is_cancelled:
            return
        if version == seen:
            continue
        # interval only caps the redraw rate; waiting on the cancel event keeps exit prompt.
        pause = interval - (time.monotonic() - last_build)
        if pause > 0 and worker.cancelled_event.wait(pause):
            return
        seen = head.version
        last_build = time.monotonic()
        try:
            frames = head.latest(max(builder.frames_needed(), serving_builder.frames_needed()))
            snapshot = builder.build(frames, version=seen)
            serving = serving_builder.build(frames, snapshot)
        except Exception as err:  # a bad frame must not end live updates
            post(SnapshotFailed(f"{type(err).__name__}: {err}"))
            continue
        post(ServingReady(serving))
        post(FrameReady(snapshot))
