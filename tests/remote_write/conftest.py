"""pytest setup for the remote-write tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register `minute`: a test waiting out a minute-long outage (`-m "not minute"` leaves it out)."""
    config.addinivalue_line("markers", "minute: waits out a minute-long receiver outage (about 1.5 min wall)")
