"""The screen as the terminal shows it, read through Textual's public screenshot export.

`App.export_screenshot()` is Rich's SVG: one `<text>` element per run of styled text, placed at
`x = column * char_width` and clipped to its row's `...-line-N` path; runs of blanks are left
out. Placing each run at its column rebuilds the rows without reaching into Textual's compositor.
"""

from __future__ import annotations

import html
import re

from textual.app import App

_RUN = re.compile(
    r'<text class="[^"]*" x="(?P<x>[\d.]+)" y="[\d.]+" textLength="(?P<length>[\d.]+)" '
    r'clip-path="url\(#[^"]*-line-(?P<row>\d+)\)">(?P<text>.*?)</text>'
)
CHAR_WIDTH = 0.61 * 20
"""Rich's export_svg cell width: font size 20 times its 0.61 aspect (rich/console.py)."""


def screen_lines(app: App) -> list[str]:
    """One string per terminal row of the app's current screen."""
    width, height = app.size
    rows = [[" "] * width for _ in range(height)]
    for run in _RUN.finditer(app.export_screenshot()):
        row = int(run["row"])
        column = round(float(run["x"]) / CHAR_WIDTH)
        for offset, char in enumerate(html.unescape(run["text"]).replace("\xa0", " ")):
            if row < height and column + offset < width:
                rows[row][column + offset] = char
    return ["".join(row) for row in rows]
