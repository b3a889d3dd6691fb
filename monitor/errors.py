"""The one error type a user sees: a single clear line and a non-zero exit, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad path, bad time, bad config, unreachable endpoint).

    The CLI prints `monitor: <message>` on stderr and exits with `exit_code`.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        """One line, naming the thing that is wrong and, where possible, what to do."""
        super().__init__(message)
        self.exit_code = exit_code
