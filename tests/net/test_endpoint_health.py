"""Endpoint health against real loopback servers: STALE after a miss, DOWN after three or at once on a
refusal, a configured timeout honoured, and a starved collector told apart from dead servers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from collectors.clock import SimClock
from collectors.config import RackConfig, ServerTarget, parse_config
from collectors.poller import Poller
from collectors.scrape import ScrapeSource
from monitor.commands.root import scrape_source, scrape_timeout
from monitor.errors import UserError
from storage.head import Head
from storage.schemas import EndpointState, EventKind
from storage.writer import StoreWriter
from tests.net.conftest import PageServer, free_port
from tests.store_checks import assert_no_duplicate_rows

TS = 1_790_000_000_000


def events(frame) -> list[tuple[str, str, str]]:
    return [(e["kind"], e["source"], e["detail"]) for e in frame.table("events").to_pylist()]


def test_a_silent_endpoint_is_stale_twice_then_down_once(pages: PageServer) -> None:
    servers = [
        ServerTarget("good", pages.url("/vllm")),
        ServerTarget("hung", pages.url("/hang"), engine="vllm"),
    ]
    source = ScrapeSource([], servers, timeout_s=0.3)
    try:
        seen = []
        for tick in range(4):
            frame = source.poll(TS + tick * 1000)
            state = {r["endpoint"]: r["state"] for r in frame.table("serving").to_pylist()}["hung"]
            seen.append((state, events(frame)))
    finally:
        source.close()
    down = (EventKind.ENDPOINT_DOWN, "hung", "hung: no answer within 0.3 s (3 scrapes in a row)")
    assert seen == [
        (EndpointState.STALE, []),
        (EndpointState.STALE, []),
        (EndpointState.DOWN, [down]),
        (EndpointState.DOWN, []),
    ]


def test_a_refused_endpoint_is_down_at_once_and_up_names_it(pages: PageServer) -> None:
    port = free_port()
    servers = [
        ServerTarget("good", pages.url("/vllm")),
        ServerTarget("gone", f"http://127.0.0.1:{port}/metrics"),
    ]
    source = ScrapeSource([], servers, timeout_s=5.0)
    try:
        first = source.poll(TS)
        source._endpoints[1].status.url = pages.url("/vllm")  # the server is back
        back = source.poll(TS + 1000)
    finally:
        source.close()
    assert events(first) == [(EventKind.ENDPOINT_DOWN, "gone", "gone: connection refused")]
    assert events(back) == [(EventKind.ENDPOINT_UP, "gone", "gone answering again after 1 failed scrapes")]


def test_a_configured_timeout_is_honoured_not_cut(pages: PageServer, tmp_path: Path) -> None:
    text = f'[rack]\nname = "r"\ntimeout = 2.0\n\n[[server]]\nname = "hung"\nurl = "{pages.url("/hang")}"\n'
    config = parse_config(text, tmp_path / "rack.toml")
    assert scrape_timeout(config, interval=1.0) == 2.0
    source = scrape_source(config, interval=1.0)
    try:
        source.poll(TS)
        assert source.statuses()[0].reason == "no answer within 2 s"
    finally:
        source.close()


def test_timeouts_default_to_the_interval_and_a_nonsensical_one_is_refused(tmp_path: Path) -> None:
    plain = RackConfig(
        "r", servers=(ServerTarget("s", "http://127.0.0.1:1/metrics"),), path=tmp_path / "r.toml"
    )
    assert [scrape_timeout(plain, i) for i in (0.5, 1.0, 5.0, 60.0)] == [2.0, 2.0, 5.0, 10.0]
    slow = RackConfig("r", servers=plain.servers, timeout_s=30.0, path=tmp_path / "r.toml")
    assert scrape_timeout(slow, interval=5.0) == 30.0
    with pytest.raises(UserError, match=r"r.toml: rack.timeout = 30 s is more than 10 poll intervals of 1 s"):
        scrape_timeout(slow, interval=1.0)


def test_a_starved_collector_is_one_late_event_not_a_mass_down(pages: PageServer, tmp_path: Path) -> None:
    """Starvation: the scrape thread stalls 1.5 s while every request is in flight (timeout 0.5 s).

    The servers answer only once the late tick is out: had they answered during the stall, the loop
    would wake with each page readable and each timeout due at once, and which of the two it ran first
    decided the outcome (CI on a loaded machine saw the pages win, so no miss and no event).
    """
    servers = [ServerTarget(f"vllm-{i}", pages.url("/gated"), engine="vllm") for i in range(6)]
    source = ScrapeSource([], servers, name="rack-a", timeout_s=0.5)
    head = Head()
    with StoreWriter(tmp_path / "store", head=head, flush_interval_s=1.0, compaction="inline") as writer:
        poller = Poller([source], head, clock=SimClock(TS / 1000), deadline=60.0, sinks=[writer.store])
        poller.tick(TS)
        pages.close_gate(expected=len(servers))
        poller.start_tick(TS + 1000)
        assert pages.gated_arrived.wait(30)  # every request waits at the server
        source._loop.call_soon_threadsafe(time.sleep, 1.5)  # the collector's loop is starved
        while not (late := poller.emit_ready()):
            poller._inflight[0][0].result(timeout=30)
        pages.open_gate()  # for the next ticks
        frames = [*late, *(poller.tick(TS + k * 1000) for k in range(2, 6))]
        poller.stop()
    kinds = [(kind, src) for f in frames for kind, src, _ in events(f)]
    assert kinds == [(EventKind.COLLECTOR_LATE, "rack-a")]
    assert events(frames[0])[0][2].startswith("collector late by ")
    assert "6 of 6 endpoints missed tick" in events(frames[0])[0][2]
    assert {r["state"] for r in frames[0].table("serving").to_pylist()} == {EndpointState.STALE}
    assert all(s.state == EndpointState.OK and s.misses == 0 for s in source.statuses())
    assert_no_duplicate_rows(tmp_path / "store", head)
