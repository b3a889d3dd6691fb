"""The receiver goes away mid-run and comes back: nothing is lost, the backlog drains in order.

The sender runs in its own thread, as in `monitor collect`. The outage here is as long as it takes to
record a second stretch of history and see several failed tries (seconds, not the issue's minute:
what matters is that the backlog waits in the store and the position does not move while the
receiver is away); the receiver is restarted on the same port and data directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collectors.remote_write.sender import RemoteWriteSender, read_position
from collectors.remote_write.series import SeriesEncoder
from collectors.remote_write.settings import RemoteWriteSettings
from monitor.backfill import backfill
from tests.peer_servers import prometheus_receiver, victoria_receiver, write_url
from tests.remote_write.receivers import settle
from tests.remote_write.test_receivers import RACK, SELECTOR, store_samples


def wait(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)  # the sender is a thread of its own: poll its status


@pytest.mark.parametrize("receiver", [prometheus_receiver, victoria_receiver], ids=["prometheus", "victoria"])
def test_receiver_down_mid_run_loses_nothing(tmp_path: Path, receiver) -> None:
    store = tmp_path / "store"
    end_s = int(time.time()) - 2
    first_end = end_s - 10
    backfill(store, 8, end_s=first_end, seed=5)
    server = receiver(tmp_path)
    with server:
        settings = RemoteWriteSettings(url=write_url(server), batch_size=30_000, interval_s=0.2)
        sender = RemoteWriteSender(store, settings, SeriesEncoder(RACK))
        sender.min_backoff_s, sender.max_backoff_s = 0.1, 0.5
        sender.start()
        try:
            wait(lambda: sender.status.sent_through_ms == first_end * 1000, "the first stretch to be sent")
            server.__exit__(None, None, None)  # the receiver goes away
            backfill(store, 8, end_s=end_s, seed=5)  # recording goes on meanwhile
            failures = sender.status.failures
            wait(lambda: sender.status.failures >= failures + 3, "three failed tries")
            down = sender.status
            assert down.state == "retrying"
            assert "cannot reach" in down.message and "connection refused" in down.message
            assert down.sent_through_ms == first_end * 1000  # nothing skipped, nothing dropped
            assert read_position(store, settings.url) == first_end * 1000
            server.__enter__()  # back, same port and data
            wait(lambda: sender.status.sent_through_ms == end_s * 1000, "the backlog to drain")
        finally:
            sender.stop()
        assert sender.status.dropped_samples == 0
        expected = store_samples(store)
        assert sender.status.sent_samples == expected
        assert settle(server, SELECTOR, end_s + 1, 120, expected) == expected
