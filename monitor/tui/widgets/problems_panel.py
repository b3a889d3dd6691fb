"""The problems panel: what is wrong now, most severe first, one line each; `x` steps through them (the
rack's selection follows), `o` opens the one under the cursor (the worst when none is chosen).

It takes the focus on the rack view (nothing else there wants it), so its two keys work there and
nowhere else; the arrows, enter and the metric keys stay the app's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from monitor.view.problems import Problem, RackProblems, Rank

if TYPE_CHECKING:
    from monitor.tui.app import RackApp

MAX_LINES = 5
"""Problem lines shown at once; the cursor's line is always among them."""


def problem_line(problem: Problem, *, cursor: bool) -> str:
    """'> T13.G4 link 7 down: 17/18 up, error counters +3,120 in 45 samples' (the mark: '>' or ' ')."""
    return f"{'>' if cursor else ' '} {problem.text}"


class ProblemsPanel(Static, can_focus=True):
    """The rack's problems, most severe first; 'no problems: ...' when there are none."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"problems--severe", "problems--warn", "problems--ok"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "next_problem", "next problem", tooltip="Step through the problems", id="problem-next"),
        Binding("o", "open_problem", "open problem", tooltip="Open the problem's view", id="problem-open"),
    ]

    problems: reactive[RackProblems | None] = reactive(None)
    """What the panel lists (None before the first snapshot)."""
    cursor: reactive[int | None] = reactive(None)
    """The problem `x` moved to (None: none chosen; `o` then opens the worst)."""

    class Opened(Message):
        """A problem's view was opened."""

        def __init__(self, problem: Problem) -> None:
            """Carry the problem opened."""
            super().__init__()
            self.problem = problem

    def show(self, problems: RackProblems) -> None:
        """List `problems` (a repeat of the same list costs nothing)."""
        self.problems = problems

    @property
    def current(self) -> Problem | None:
        """The problem under the cursor, else the worst one, else None."""
        listed = self.problems.problems if self.problems else ()
        if not listed:
            return None
        return listed[self.cursor if self.cursor is not None else 0]

    def watch_problems(self, old: RackProblems | None, new: RackProblems | None) -> None:
        """Keep the cursor on the same place when the list changes; redraw."""
        if self.cursor is not None and old is not None and new is not None:
            chosen = old.problems[self.cursor].place if self.cursor < len(old.problems) else None
            places = [p.place for p in new.problems]
            self.cursor = places.index(chosen) if chosen in places else None
        self._paint()

    def watch_cursor(self) -> None:
        """Redraw with the mark on the new line."""
        self._paint()

    def _paint(self) -> None:
        problems = self.problems
        if problems is None:
            self.update("waiting for data")
            return
        self.border_title = f"Problems ({len(problems.problems)})" if problems.problems else "Problems"
        self.border_subtitle = "x next  o open" if problems.problems else ""
        if not problems.problems:
            self.update(Text(problems.summary, style=self.get_component_rich_style("problems--ok")))
            return
        listed = problems.problems
        first = max(0, min((self.cursor or 0) - MAX_LINES + 2, len(listed) - MAX_LINES))
        shown = listed[first : first + MAX_LINES]
        more = len(listed) - first - len(shown)
        if more:
            shown = shown[:-1]
            more += 1
        text = Text(no_wrap=True, overflow="ellipsis")
        for n, p in enumerate(shown, start=first):
            severe = p.rank <= Rank.LINK_DOWN
            style = self.get_component_rich_style("problems--severe" if severe else "problems--warn")
            if n > first:
                text.append("\n")
            text.append(problem_line(p, cursor=n == self.cursor), style=style)
        if more:
            text.append(f"\n  +{more} more: x steps to them")
        self.update(text)

    def action_next_problem(self) -> None:
        """Move to the next problem (the worst first, wrapping), and select its GPU in the rack."""
        listed = self.problems.problems if self.problems else ()
        if not listed:
            return
        self.cursor = 0 if self.cursor is None else (self.cursor + 1) % len(listed)
        problem = listed[self.cursor]
        app: RackApp = self.app  # type: ignore[assignment]
        if problem.gpu is not None and problem.gpu in app.layout.gpus:
            app.selected = problem.gpu
            app.redraw()

    def action_open_problem(self) -> None:
        """Open the view that shows the current problem: a GPU's detail, a link in the NVLink matrix,
        a server in the serving view (its GPUs marked in the rack), the events for a collector."""
        problem = self.current
        if problem is None:
            return
        app: RackApp = self.app  # type: ignore[assignment]
        if problem.gpu is not None and problem.gpu in app.layout.gpus:
            app.selected = problem.gpu
        if problem.view == "nvlink":
            app.action_view("nvlink")
            if problem.gpu is not None and problem.link is not None:
                app.call_after_refresh(_aim_link, app, problem.gpu, problem.link)
        elif problem.view == "serving":
            if problem.endpoint is not None:
                app.highlight(problem.endpoint, (problem.gpu,) if problem.gpu is not None else ())
            app.action_view("serving")
        elif problem.view == "events" or problem.gpu is None:
            app.action_view("events")
        else:
            app.open_gpu_detail(problem.gpu)
        self.post_message(self.Opened(problem))


def _aim_link(app: RackApp, gpu: int, link: int) -> None:
    """Put the NVLink view's cursor on the problem's link (the view opens on the GPU's link 0)."""
    from monitor.tui.screens.nvlink import NvlinkScreen
    from monitor.tui.widgets.nvlink_matrix import NvlinkMatrixView

    screen = app.screen
    if isinstance(screen, NvlinkScreen):
        screen.query_one(NvlinkMatrixView).place_cursor(gpu, link)
        screen.action_move(0, 0)
