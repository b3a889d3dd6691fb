"""Repaint only what changed on screen: changed cell spans of a line, and border rows whose title changed.

Textual sends every cell of a dirty region to the terminal, and a widget refreshed without regions is
dirty as a whole. At 1 Hz over SSH that is most of the bytes a steady rack costs (reference/textual.md,
sections 4 and 7), so the widgets here diff what they would draw against what is on screen and mark
only the spans that differ.
"""

from __future__ import annotations

from itertools import zip_longest
from typing import Self

from rich.cells import get_character_cell_size
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widget import Widget

_Cell = tuple[str, Style | None]


def strip_cells(strip: Strip) -> list[_Cell]:
    """One (character, style) per terminal cell; the second cell of a wide character is ('', style)."""
    cells: list[_Cell] = []
    for text, style, control in strip:
        if control:
            continue
        for char in text:
            cells.append((char, style))
            if get_character_cell_size(char) == 2:
                cells.append(("", style))
    return cells


def changed_span(old: Strip, new: Strip) -> tuple[int, int] | None:
    """The [start, end) cells from the first to the last cell where two strips differ, or None.

    One span per line, not one per change: Textual sends a dirty span of a line from the left edge of
    the widget it falls in, so a second span on the same line would resend that prefix again.
    A cell present in only one strip counts as changed.
    """
    if old == new:
        return None
    a, b = strip_cells(old), strip_cells(new)
    if a == b:
        return None
    length = max(len(a), len(b))
    start = next(x for x in range(length) if x >= len(a) or x >= len(b) or a[x] != b[x])
    end = length
    if len(a) == len(b):
        while end > start and a[end - 1] == b[end - 1]:
            end -= 1
    return start, end


class DiffPaintWidget(Widget):
    """A widget that repaints changed cell spans of its lines, and only the border row a title sits on."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        """A widget with no border texts set through set_border_text() yet."""
        super().__init__(id=id, classes=classes)
        self._border_texts: dict[bool, str] = {}
        self._border_only = False

    def repaint_line(self, y: int, old: Strip | None, new: Strip) -> int:
        """Mark the cells of content line `y` that differ between `old` and `new` for a repaint.

        Returns:
            1 when something was marked, else 0.
        """
        width = self.size.width
        if not width:
            return 0
        if old is None:
            self.refresh(Region(0, y, width, 1))
            return 1
        span = changed_span(old, new)
        if span is None or span[0] >= width:
            return 0
        start, end = span[0], min(span[1], width)
        self.refresh(Region(start, y, end - start, 1))
        return 1

    def set_border_text(self, *, title: str | None = None, subtitle: str | None = None) -> None:
        """Set the border title and/or subtitle (None leaves one as it is), repainting only its row.

        Assigning border_title / border_subtitle directly repaints the whole widget every time, even
        when the text is the same; a clock in a subtitle would resend a 48-row heatmap every second.
        """
        for top, text in ((True, title), (False, subtitle)):
            if text is None or self._border_texts.get(top) == text:
                continue
            self._border_texts[top] = text
            self._border_only = True
            try:
                if top:
                    self.border_title = text
                else:
                    self.border_subtitle = text
            finally:
                self._border_only = False
            self._refresh_border_row(top)

    def _refresh_border_row(self, top: bool) -> None:
        """Repaint the outer row a border title (top) or subtitle (bottom) is drawn on."""
        if not self.size:
            self.refresh()
            return
        gutter = self.styles.gutter
        y = -gutter.top if top else self.size.height + gutter.bottom - 1
        self.refresh(Region(-gutter.left, y, self.outer_size.width, 1))

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> Self:
        """Widget.refresh, except the whole-widget repaint a border text assignment asks for."""
        if self._border_only:
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


class LinePanel(DiffPaintWidget):
    """Text shown like a Static, but a new text repaints only the cells that changed.

    With an auto height a change in the number of lines relayouts (and repaints) the panel.
    """

    DEFAULT_CSS = "LinePanel { height: auto; }"

    def __init__(self, text: Text | str = "", *, id: str | None = None, classes: str | None = None) -> None:
        """A panel showing `text`."""
        super().__init__(id=id, classes=classes)
        self._text = text if isinstance(text, Text) else Text(text)
        self._strips: list[Strip] = []
        self._strips_for: tuple[int, int] | None = None

    @property
    def text(self) -> Text:
        """What the panel shows."""
        return self._text

    def render(self) -> Text:
        """The text (Textual sizes an auto height from it)."""
        return self._text

    def show_text(self, text: Text) -> bool:
        """Show `text`; returns whether it differs from what was shown (only then is anything repainted)."""
        if text == self._text:
            return False
        height = self.styles.height
        # An auto height follows the line count: a new count needs a layout pass.
        relayout = (
            height is not None and height.is_auto and text.plain.count("\n") != self._text.plain.count("\n")
        )
        self._text = text
        size = (self.size.width, self.size.height)
        if relayout or not all(size) or self._strips_for != size:
            self._strips_for = None
            self.refresh(layout=relayout)
            return True
        old = self._strips
        self._strips = self._render_strips()
        for y, (before, after) in enumerate(zip_longest(old, self._strips)):
            if after is None:
                after = Strip.blank(self.size.width)
            self.repaint_line(y, before, after)
        return True

    def _render_strips(self) -> list[Strip]:
        """The text as Textual renders a Static's content at the current size and styles."""
        width, height = self.size
        strips = Visual.to_strips(self, visualize(self, self._text), width, height, self.visual_style)
        # Textual sends each segment with its own style codes: runs of one style go as one.
        return [strip.simplify() for strip in strips]

    def render_line(self, y: int) -> Strip:
        """Line y of the text (rendered again after a resize or a style change)."""
        size = (self.size.width, self.size.height)
        if self._strips_for != size:
            self._strips = self._render_strips()
            self._strips_for = size
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width, self.visual_style.rich_style)

    def notify_style_update(self) -> None:
        """Styles changed: render the text again on the next paint."""
        super().notify_style_update()
        self._strips_for = None
