"""Trays answering Arrow: the collector's frames equal those it builds from the same agents' text pages.

Two scrape sources watch one simulated rack at the same simulated instants: one asks the trays for the
agent's Arrow stream (the default), the other for text only (tray_arrow=False), the independent path
through the page parser and mapper. Both answers of one instant come from one agent poll
(AgentPage caches the frame, not the text), so any difference is the Arrow path's.
"""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest

from collectors.clock import SimClock
from collectors.scrape import ScrapeSource
from collectors.sim import SimRack
from collectors.sim.http import SimServers
from storage.frame import Frame
from storage.schemas import EndpointState, EventKind

T0 = 1_760_000_000.0
TICKS = 24
STEP_S = 3
"""24 ticks 3 s apart with the fault at 6 s: the fault, its events and what follows (a lost GPU, a link
flapping for 45 s then down, counters restarting from 0) all fall inside."""
EXPECTED_EVENTS = {
    "gpu-lost": {EventKind.GPU_LOST, EventKind.XID},
    "nvlink-flap": {EventKind.LINK_DOWN, EventKind.XID},
    "restart": set(),
    "thermal": set(),
    "steady": set(),
}


IN_ORDER = {"gpu", "nvlink", "events"}
"""Every table the trays give: their rows come in config order, compared as they are."""


def _rows(frame: Frame, table: str) -> list[dict[str, object]]:
    assert table in IN_ORDER
    return frame.table(table).to_pylist()


def _sources(servers: SimServers) -> tuple[ScrapeSource, ScrapeSource]:
    assert servers.config is not None
    config = servers.config
    # Trays only (servers answer text either way, and a restarting server's socket closes on the
    # simulator's own timer, between the two polls of one instant), with a generous timeout: on a
    # loaded machine a miss in one source and not the other is no difference of the two paths.
    arrow = ScrapeSource(config.trays, name=config.name, timeout_s=20)
    text = ScrapeSource(config.trays, name=config.name, timeout_s=20, tray_arrow=False)
    return arrow, text


@pytest.mark.parametrize("scenario", list(EXPECTED_EVENTS))
def test_arrow_frames_equal_text_frames(scenario: str) -> None:
    clock = SimClock(T0)
    rack = SimRack(seed=7, clock=clock, scenario=scenario, fault_at=6)
    kinds: set[str] = set()
    with SimServers(rack) as servers:
        arrow, text = _sources(servers)
        try:
            for _ in range(TICKS):
                clock.advance(STEP_S)
                ts = int(clock.now() * 1000)
                from_arrow = arrow.poll(ts)
                from_text = text.poll(ts)
                assert sorted(from_arrow.batches) == sorted(from_text.batches)
                for table in from_text.batches:
                    assert from_arrow.table(table).schema == from_text.table(table).schema
                    assert _rows(from_arrow, table) == _rows(from_text, table), f"{table} at {ts}"
                kinds.update(r["kind"] for r in _rows(from_text, "events"))
            trays = [s for s in arrow.statuses() if s.kind == "tray"]
            assert {s.answer for s in trays} == {"arrow"}
            assert {s.answer for s in text.statuses() if s.kind == "tray"} == {"text"}
            assert all(s.state == EndpointState.OK for s in trays)
        finally:
            arrow.close()
            text.close()
    assert EXPECTED_EVENTS[scenario] <= kinds


def test_restart_counters_fall_on_both_paths_alike() -> None:
    """The restart scenario's NVML counters drop to 0 and the agent carries them: the gpu energy column
    the Arrow path stores never falls, as the text path's does not (CounterCarry ran before either)."""
    clock = SimClock(T0)
    rack = SimRack(seed=7, clock=clock, scenario="restart", fault_at=3)
    energy: list[list[int]] = []
    with SimServers(rack) as servers:
        arrow, text = _sources(servers)
        try:
            for _ in range(8):
                clock.advance(1)
                frame = arrow.poll(int(clock.now() * 1000))
                text.poll(int(clock.now() * 1000))
                energy.append(pa.RecordBatch.to_pydict(frame.table("gpu"))["energy_mj"])
        finally:
            arrow.close()
            text.close()
    for before, after in itertools.pairwise(energy):
        assert all(b is None or a is None or a >= b for b, a in zip(before, after, strict=True))
