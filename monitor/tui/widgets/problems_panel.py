"""The problems panel: what is wrong now, most severe first, one line each.

The app's `x` (step) and `o` (open) keys drive it: stepping posts Stepped (the rack's selection
follows), opening posts Opened for the one under the cursor (the worst when none is chosen); the app
opens its view (monitor.tui.problem_views). The keys are the app's, so they are in the key line, the
help screen and the [keys] table like every other.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from monitor.view.problems import Problem, RackProblems, Rank

MAX_LINES = 5
"""Problem lines shown at once; the cursor's line is always among them."""


def problem_line(problem: Problem, *, cursor: bool) -> str:
    """'> T13.G4 link 7 down: 17/18 up, error counters +3,120 in 45 samples' (the mark: '>' or ' ')."""
    return f"{'>' if cursor else ' '} {problem.text}"


class ProblemsPanel(Static):
    """The rack's problems, most severe first; 'no problems: ...' when there are none."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"problems--severe", "problems--warn", "problems--ok"}

    problems: reactive[RackProblems | None] = reactive(None)
    """What the panel lists (None before the first snapshot)."""
    cursor: reactive[int | None] = reactive(None)
    """The problem `x` moved to (None: none chosen; `o` then opens the worst)."""

    class Stepped(Message):
        """The cursor moved to a problem."""

        def __init__(self, problem: Problem) -> None:
            """Carry the problem now under the cursor."""
            super().__init__()
            self.problem = problem

    class Opened(Message):
        """The problem under the cursor is to be opened in its view."""

        def __init__(self, problem: Problem) -> None:
            """Carry the problem to open."""
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

    def step(self) -> None:
        """Move to the next problem (the worst first, wrapping) and post Stepped."""
        listed = self.problems.problems if self.problems else ()
        if not listed:
            return
        self.cursor = 0 if self.cursor is None else (self.cursor + 1) % len(listed)
        self.post_message(self.Stepped(listed[self.cursor]))

    def open(self) -> None:
        """Post Opened for the problem under the cursor (the worst when none is chosen)."""
        problem = self.current
        if problem is not None:
            self.post_message(self.Opened(problem))
