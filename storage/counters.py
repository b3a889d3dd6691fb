"""The counter reset rule (Prometheus' increase(), per series): one function for the views and the alerts."""

from __future__ import annotations


def counter_increase(old: int | None, new: int | None) -> int | None:
    """How much a counter grew, Prometheus-style: v - p if v >= p, else v (after a reset the new value
    is all increase). None when either sample is unknown."""
    if new is None or old is None:
        return None
    return new - old if new >= old else new
