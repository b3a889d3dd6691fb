"""The terminal options every TUI command shares (`--color`, `--max-fps`, and `--store`'s help).

They become environment variables that Textual reads when it is imported, so apply_terminal_options runs
before that import. A module of its own, importing nothing heavy: the command line imports it for every
command's help, and `monitor agent` or `collect` should not load the live TUI's poller to print it.
"""

from __future__ import annotations

import os

from monitor.errors import UserError

COLOR_SYSTEMS: dict[str, str | None] = {
    "auto": None,
    "truecolor": "truecolor",
    "256": "256",
    "16": "standard",
    "none": None,
}
"""--color choices -> TEXTUAL_COLOR_SYSTEM ('none' sets NO_COLOR instead; 'auto' leaves Rich to detect)."""
COLOR_HELP = "Colours: auto, truecolor, 256, 16 or none (NO_COLOR: greys; numbers and glyphs carry meaning)."
RECORD_HELP = (
    "Also record everything into this store directory (history for the GPU detail charts, and for "
    "export/replay/report later); if `monitor collect` already records it, just read its history."
)
MAX_FPS_HELP = (
    "Most screen updates a second (lower it on a slow SSH link; data arrives at --interval anyway)."
)


def apply_terminal_options(color: str = "auto", max_fps: int | None = None) -> None:
    """Set the colour system and frame cap for Textual; must run before Textual is imported.

    Raises:
        UserError: an unknown colour choice or a frame cap below 1.
    """
    if color not in COLOR_SYSTEMS:
        raise UserError(f"--color must be one of {', '.join(COLOR_SYSTEMS)}, not {color!r}")
    if color == "none":
        os.environ["NO_COLOR"] = "1"
    elif COLOR_SYSTEMS[color] is not None:
        os.environ["TEXTUAL_COLOR_SYSTEM"] = COLOR_SYSTEMS[color]  # type: ignore[assignment]
    if max_fps is not None:
        if max_fps < 1:
            raise UserError(f"--max-fps must be at least 1, not {max_fps}")
        os.environ["TEXTUAL_FPS"] = str(max_fps)
