"""The live view's rack totals: tokens/s and the power sparkline, by storage.rack_total's rule.

Kept apart from the builder so the rule's use in the live view reads in one place: tokens/s is each
serving series' rate over a window of frames (storage.increase.rate) summed over the series that have
one, with its coverage; the power sparkline leaves out ticks that cover fewer GPUs than the best tick
it shows, so a tray that missed a deadline is never drawn as a dip.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.view.lookback import freshest
from storage.frame import Frame
from storage.increase import Point, rate
from storage.rack_total import RackTotal, tokens_total
from storage.schemas import EndpointState

ServingCounters = dict[tuple[str, str], tuple[int, int | None]]
"""One frame's serving series (endpoint, engine) -> (state, generation_tokens)."""


_ANSWERED = (EndpointState.OK, EndpointState.PARTIAL)
"""States of a serving row whose page was read (PARTIAL: some engine's series NaN or missing)."""


def serving_counters(frame: Frame) -> ServingCounters:
    """(state, generation_tokens) per serving series of a frame."""
    batch = frame.batches.get("serving")
    if batch is None or not batch.num_rows:
        return {}
    cols = batch.select(["endpoint", "engine", "state", "generation_tokens"]).to_pydict()
    return {
        (endpoint, engine): (state, tokens)
        for endpoint, engine, state, tokens in zip(*cols.values(), strict=True)
    }


def rack_tokens(frames: Sequence[tuple[int, ServingCounters]], window_ms: int, fresh_ms: int) -> RackTotal:
    """Rack tokens/s at the newest of `frames` ((ts_ms, counters), oldest first).

    A series counts when its newest row within `fresh_ms` that is not a STALE stand-in answered (OK
    or PARTIAL) and it has a rate over its answered samples of the last `window_ms`; the total covers
    those, of every series in the window. A stand-in (no new page at that tick, e.g. the previous
    scrape still running on a loaded collector) is a gap, not a server gone.
    """
    if not frames:
        return RackTotal(None, 0, 0)
    newest_ms = frames[-1][0]
    window = [(ts, counters) for ts, counters in frames if ts >= newest_ms - window_ms]
    keys = {key for _, counters in window for key in counters}
    rates: list[float | None] = []
    for key in keys:
        states = ((ts, counters[key][0]) for ts, counters in reversed(window) if key in counters)
        if freshest(states, newest_ms, fresh_ms, lambda state: state == EndpointState.STALE) not in _ANSWERED:
            rates.append(None)
            continue
        points: list[Point] = [
            (ts, counters[key][1])  # a None value is a gap: rate() skips it
            for ts, counters in window
            if key in counters and counters[key][0] in _ANSWERED
        ]
        rates.append(rate(points))
    return tokens_total(rates, len(keys))


def power_history(totals: Sequence[RackTotal]) -> tuple[float, ...]:
    """Rack kW per tick for the sparkline, leaving out ticks that cover fewer GPUs than the best one."""
    best = max((t.covered for t in totals), default=0)
    return tuple(t.value for t in totals if t.value is not None and t.covered >= best)
