"""LiveScreen: a view over the rack view that rebuilds its model off the event loop when data arrives.

The app tells the current screen about each new rack snapshot (rack_updated); the screen then reads the
frames it needs from the app's head in a thread worker and shows the model it built. A screen that is
not current is never told, so hidden views do no work; it rebuilds when it becomes current again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import ScrollableContainer
from textual.message import Message
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBarRender
from textual.worker import get_current_worker

from monitor.view.model import RackSnapshot
from storage.frame import Frame

if TYPE_CHECKING:
    from monitor.tui.rack_ui import RackUi


class ModelReady(Message, bubble=False):
    """A screen's model was built in its worker; only the newest one matters."""

    def __init__(self, model: Any, snapshot: RackSnapshot) -> None:
        """Carry the model and the rack snapshot it goes with."""
        super().__init__()
        self.model = model
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        """A newer model supersedes a queued older one."""
        return isinstance(message, ModelReady)


class BlockScrollBarRender(ScrollBarRender):
    """A scrollbar thumb of whole cells (reverse video), no partial-block glyphs at its ends."""

    VERTICAL_BARS: ClassVar[list[str]] = [" "] * 8
    HORIZONTAL_BARS: ClassVar[list[str]] = [" "] * 8


BACK = Binding("escape", "back", "back", tooltip="Back to the rack view", id="back")


class LiveScreen(Screen[None]):
    """Base of every data view; subclasses implement build_model (thread) and show (event loop)."""

    BINDINGS: ClassVar[list[BindingType]] = [BACK]

    DEFAULT_CSS = """
    LiveScreen .view--line, LiveScreen .view--keys {
        height: 1; text-wrap: nowrap; text-overflow: ellipsis; padding: 0 1;
    }
    LiveScreen .view--keys { background: $panel; }
    LiveScreen DataTable { height: 1fr; }
    """
    """One-line panels have a fixed height, so updating them needs no layout pass (a full repaint); a table
    takes the rest, so the key line stays at the bottom while the table is still empty."""

    view_name: ClassVar[str] = ""
    """What the command palette and the help call this view."""

    def __init__(self) -> None:
        """A view with no model yet."""
        super().__init__()
        self.models_shown = 0
        """Models shown so far (tests await this)."""

    @property
    def rack(self) -> RackUi:
        """The app, typed."""
        return self.app  # type: ignore[return-value]

    @property
    def screen_bindings(self) -> list[Binding]:
        """This screen's own bindings, as Binding objects."""
        return [b for b in self.BINDINGS if isinstance(b, Binding)]

    def frames_needed(self) -> int:
        """How many of the head's newest frames build_model wants."""
        return 2

    def build_model(self, frames: list[Frame], snapshot: RackSnapshot) -> Any:
        """Build the view's model from frames (runs in a thread: no widget access)."""
        raise NotImplementedError

    def show(self, model: Any, snapshot: RackSnapshot) -> None:
        """Draw a model (event loop)."""
        raise NotImplementedError

    def model_now(self, snapshot: RackSnapshot) -> Any | None:
        """A model made at once from what the app already holds (drawn without a worker), or None."""
        return None

    def on_mount(self) -> None:
        """Block-cell scrollbars: the one-eighth glyphs Textual draws at a thumb's ends read as stray
        characters where colours are few (--color 16, NO_COLOR) or a capture drops them."""
        for widget in self.query("*"):
            if isinstance(widget, (ScrollView, ScrollableContainer)):
                widget.vertical_scrollbar.renderer = BlockScrollBarRender
                widget.horizontal_scrollbar.renderer = BlockScrollBarRender

    def on_screen_resume(self) -> None:
        """Rebuild from the newest data whenever the view becomes current."""
        self.rack_updated(self.rack.snapshot)

    def rack_updated(self, snapshot: RackSnapshot) -> None:
        """A new rack snapshot arrived: draw model_now's model, else rebuild in a worker (newest wins)."""
        model = self.model_now(snapshot)
        if model is not None:
            self.on_model_ready(ModelReady(model, snapshot))
            return
        self.run_worker(
            lambda: self._build(snapshot),
            thread=True,
            exclusive=True,
            group=f"view-{type(self).__name__}",
            exit_on_error=False,
        )

    def _build(self, snapshot: RackSnapshot) -> None:
        frames = self.rack.head.latest(self.frames_needed())
        model = self.build_model(frames, snapshot)
        if not get_current_worker().is_cancelled:
            self.post_message(ModelReady(model, snapshot))

    def on_model_ready(self, message: ModelReady) -> None:
        """Draw the newest model."""
        self.show(message.model, message.snapshot)
        self.models_shown += 1

    def action_back(self) -> None:
        """Back to the view below (the rack view)."""
        self.dismiss(None)

    def action_help(self) -> None:
        """List this view's keys and the app's."""
        from monitor.tui.help_screen import HelpScreen

        self.app.push_screen(HelpScreen([*self.screen_bindings, *self.rack.key_bindings]))
