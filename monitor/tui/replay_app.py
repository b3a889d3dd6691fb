"""ReplayApp: RackApp over a head that a ReplaySession fills from a store, plus the replay bar and keys.

Nothing here reads the store: the session's player thread does, and the app follows the head exactly
as it does live. This module adds only the controls (play/pause, step, seek, go to a time, speed).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from monitor.replay import GOTO_FORMS, ReplayState, parse_goto
from monitor.replay_session import ReplaySession
from monitor.timespec import iso
from monitor.tui.app import RackApp
from monitor.tui.widgets.key_line import KeyLine
from monitor.tui.widgets.replay_bar import ReplayBar
from monitor.view.layout import RACK, GpuLayout


def _key(key: str, action: str, description: str, tooltip: str, id: str | None = None) -> Binding:
    # Hidden from the key line (the replay bar hints at them); the help screen lists every one.
    return Binding(key, action, description, tooltip=tooltip, id=id, show=False)


REPLAY_BINDINGS: list[BindingType] = [
    _key("space", "toggle_play", "play", "Play or pause the replay", "replay-play"),
    _key("full_stop", "step(1)", "step", "Step one tick forward (pauses)", "replay-step"),
    _key("comma", "step(-1)", "back", "Step one tick back (pauses)", "replay-back"),
    _key("right_square_bracket", "seek(10)", "+10s", "Seek 10 s forward", "replay-fwd"),
    _key("left_square_bracket", "seek(-10)", "-10s", "Seek 10 s back", "replay-rew"),
    _key("right_curly_bracket", "seek(60)", "+1m", "Seek 1 min forward", "replay-fwd-min"),
    _key("left_curly_bracket", "seek(-60)", "-1m", "Seek 1 min back", "replay-rew-min"),
    _key(
        "j", "goto", "jump to", "Jump to a time (UTC clock, ISO 8601, +/-offset, start, end)", "replay-goto"
    ),
    _key("plus", "speed(1)", "faster", "Play faster (up to 16x)", "replay-faster"),
    _key("equals_sign", "speed(1)", "faster", "Play faster (= is + without shift)"),
    _key("minus", "speed(-1)", "slower", "Play slower (down to 0.25x)", "replay-slower"),
]
"""The replay keys."""


def replay_app_bindings() -> list[BindingType]:
    """RackApp's bindings, then the replay keys: every live key does the same in replay (one key per action).

    Raises:
        ValueError: a replay key that a live binding already has.
    """
    live = {b.key: b.id or b.action for b in RackApp.BINDINGS if isinstance(b, Binding)}
    for b in REPLAY_BINDINGS:
        if isinstance(b, Binding) and b.key in live:
            raise ValueError(f"replay key {b.key!r} hides the live binding {live[b.key]!r}")
    return [*RackApp.BINDINGS, *REPLAY_BINDINGS]


class ReplayChanged(Message):
    """The replay cursor, speed or play state changed (posted from the player thread)."""

    def __init__(self, state: ReplayState) -> None:
        """Carry the new state."""
        super().__init__()
        self.state = state


class GoToTimeScreen(ModalScreen[int | None]):
    """Asks for a time inside the recording; dismisses with its epoch ms, or None on escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    GoToTimeScreen { align: center middle; }
    GoToTimeScreen > Vertical {
        width: 72; max-width: 100%; height: auto;
        border: round $primary; background: $surface; padding: 0 1;
    }
    GoToTimeScreen #goto-help { color: $text-muted; }
    GoToTimeScreen #goto-error { color: $error; text-style: bold; }
    """

    def __init__(self, state: ReplayState) -> None:
        """Ask relative to `state` (its cursor's day and its recording's range)."""
        super().__init__()
        self.state = state

    def compose(self) -> ComposeResult:
        """A prompt, an input and a line for the error."""
        with Vertical() as box:
            box.border_title = "Go to a time"
            yield Static(
                f"{iso(self.state.first_ms)} to {iso(self.state.last_ms)}; {GOTO_FORMS}", id="goto-help"
            )
            yield Input(placeholder=iso(self.state.cursor_ms), id="goto-input")
            yield Static("", id="goto-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Go there, or say in one line why not and keep asking."""
        try:
            when = parse_goto(event.value, self.state)
        except ValueError as err:
            self.query_one("#goto-error", Static).update(str(err))
            return
        self.dismiss(when)

    def action_cancel(self) -> None:
        """Close without moving the cursor."""
        self.dismiss(None)


class ReplayApp(RackApp):
    """RackApp over a replayed store: the replay bar above the keys, and the replay keys.

    Args:
        session: the replay; its head is what the app shows. The app starts its player thread on
            mount and stops it on exit.
        interval: the shortest time between two redraws (seconds); playing at 16x brings 16
            frames a second, so the default draws at most 10.
        title: shown first on the totals bar.
        subtitle: shown after the title (e.g. the store's path).
        store: the store replayed, for the views that read longer history from it (GPU detail).
        layout: the GPUs recorded: the rack, or a board host's (monitor.commands.replay.stored_layout).
    """

    BINDINGS: ClassVar[list[BindingType]] = replay_app_bindings()
    # On a short terminal (80x24) the replay bar takes the key line's row, so all 18 trays still fit;
    # ? lists every key.
    CSS = "Screen.-short #keys { display: none; }"

    def __init__(
        self,
        session: ReplaySession,
        *,
        interval: float = 0.1,
        title: str = "rack-monitor replay",
        subtitle: str = "",
        store: Path | None = None,
        layout: GpuLayout = RACK,
    ) -> None:
        """Show `session`'s head."""
        super().__init__(
            session.head, interval=interval, title=title, subtitle=subtitle, store=store, layout=layout
        )
        self.session = session
        self.replay_state = session.state

    def compose(self) -> ComposeResult:
        """The rack view, with the replay bar just above the key line."""
        placed = False
        for widget in super().compose():
            if isinstance(widget, KeyLine) and not placed:
                placed = True
                yield ReplayBar(self.replay_state, id="replay")
            yield widget
        if not placed:
            yield ReplayBar(self.replay_state, id="replay")

    def on_mount(self) -> None:
        """Hear the session's changes and start its player (RackApp's on_mount runs too)."""
        self.session.add_listener(self._session_changed)
        self.session.start()

    def on_unmount(self) -> None:
        """Stop the player thread before the app goes."""
        self.session.close()

    def _session_changed(self, state: ReplayState) -> None:
        # Called on the player thread (or in a key handler); post_message is thread-safe.
        self.post_message(ReplayChanged(state))

    def on_replay_changed(self, message: ReplayChanged) -> None:
        """Show the new cursor; report a read error once."""
        old = self.replay_state
        self.replay_state = message.state
        if self.rack_visible:
            self.query_one(ReplayBar).show(message.state)
        if message.state.error and message.state.error != old.error:
            self.notify(message.state.error, title="Replay paused", severity="error")

    def redraw(self) -> None:
        """The rack view and the replay bar (which also waits while a view is over the rack)."""
        super().redraw()
        if self.rack_visible:
            self.query_one(ReplayBar).show(self.replay_state)

    # -- keys ------------------------------------------------------------------------------

    def action_toggle_play(self) -> None:
        """Play or pause."""
        self.session.toggle_play()

    def action_step(self, ticks: int) -> None:
        """Step `ticks` ticks (pauses)."""
        self.session.step(ticks)

    def action_seek(self, seconds: int) -> None:
        """Seek `seconds` of data time."""
        self.session.seek_by(seconds * 1000)

    def action_speed(self, direction: int) -> None:
        """One speed step faster (1) or slower (-1)."""
        if direction > 0:
            self.session.faster()
        else:
            self.session.slower()

    def action_goto(self) -> None:
        """Ask for a time and move the cursor there."""

        def go(when: int | None) -> None:
            if when is not None:
                self.session.seek_to(when)

        self.push_screen(GoToTimeScreen(self.session.state), go)
