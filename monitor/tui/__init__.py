"""The live Textual TUI (rack view). Import RackApp from here; the CLI imports this lazily."""

from __future__ import annotations

from monitor.tui.app import RackApp

__all__ = ["RackApp"]
