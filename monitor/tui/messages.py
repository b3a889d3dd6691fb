"""Messages the snapshot worker posts to the app."""

from __future__ import annotations

from textual.message import Message

from monitor.view.model import RackSnapshot


class FrameReady(Message, bubble=False):
    """A new RackSnapshot was built off the event loop; only the newest queued one matters."""

    def __init__(self, snapshot: RackSnapshot) -> None:
        """Carry `snapshot` to the app."""
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        """A newer snapshot supersedes an older one still in the queue (the head keeps history)."""
        return isinstance(message, FrameReady)


class SnapshotFailed(Message, bubble=False):
    """Building a snapshot raised; the worker keeps going and the app tells the operator once."""

    def __init__(self, error: str) -> None:
        """Carry the error's one-line description."""
        super().__init__()
        self.error = error
