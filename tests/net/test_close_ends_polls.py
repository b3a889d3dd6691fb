"""Closing a scrape source ends the polls still waiting on it: a hung endpoint cannot hold the exit.

`monitor demo --racks 4` outlived its terminal: at interpreter exit every poll thread sat in
batches_as_they_land waiting out its give-up time on a loop that close() had already stopped.
"""

from __future__ import annotations

import asyncio
import threading
import time

from collectors.config import ServerTarget
from collectors.scrape import ScrapeSource, cancel_other_tasks
from collectors.scrape_http import Fetched, batches_as_they_land
from storage.frame import Frame
from storage.schemas import EndpointState
from tests.net.conftest import PageServer

TIMEOUT_S = 120.0
"""The hung endpoint's timeout: a poll that waits it out (plus the loop's grace) is the bug."""
ENDED_S = 30.0
"""A generous bound for 'the poll returned after close' on a loaded 2-core machine."""


def test_close_ends_a_poll_waiting_on_a_hung_endpoint(pages: PageServer) -> None:
    pages.close_gate(expected=1)  # /gated holds its answer until open_gate(): a hung endpoint
    source = ScrapeSource([], [ServerTarget("hung", pages.url("/gated"))], timeout_s=TIMEOUT_S)
    answers: list[Frame | BaseException] = []

    def poll() -> None:
        try:
            answers.append(source.poll(1_000))
        except BaseException as err:  # the test reads what the poll thread ended with
            answers.append(err)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        assert pages.gated_arrived.wait(ENDED_S), "the request never reached the server"
        source.close()
        poller.join(timeout=ENDED_S)
        assert not poller.is_alive(), "the poll outlived its source's close()"
    finally:
        pages.open_gate()
    (frame,) = answers
    assert isinstance(frame, Frame)
    # Closed mid-poll: no answer (STALE), not an endpoint fault (the old close failed it as DOWN).
    assert [s.state for s in source.statuses()] == [EndpointState.STALE]


def test_cancelled_fetching_ends_the_wait_for_pages() -> None:
    """The wait itself: cancelling the loop's fetches (what close() does) wakes it before give-up."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    async def never_answers(i: int) -> Fetched:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    ended = threading.Event()

    def wait_for_pages() -> None:
        for _ in batches_as_they_land(loop, never_answers, [0, 1], time.monotonic() + TIMEOUT_S):
            pass
        ended.set()

    waiter = threading.Thread(target=wait_for_pages, daemon=True)
    waiter.start()
    try:
        while not asyncio.run_coroutine_threadsafe(_fetching_started(), loop).result(ENDED_S):
            time.sleep(0.01)
        asyncio.run_coroutine_threadsafe(cancel_other_tasks(), loop).result(ENDED_S)
        assert ended.wait(ENDED_S), "the wait for pages outlived the cancelled fetches"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(ENDED_S)


async def _fetching_started() -> bool:
    """Whether the fetches are on the loop (the gather and its two fetches)."""
    return len(asyncio.all_tasks()) > 1
