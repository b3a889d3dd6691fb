"""The issue's outage: the receivers stopped for a full minute mid-run, restarted, and nothing lost.

Both real receivers (VictoriaMetrics 1.79 and Prometheus 2.42, whichever are installed) are fed from
one store by one sender each, in its own thread as in `monitor collect`; both go away at the same
moment for at least 60 s of wall time while the recording goes on (ticks keep landing in the store,
stamped with the wall clock), then come back on the same port and data directory. Afterwards each
receiver holds exactly the store's samples: the same total, the same count per family, and the same
(time, value) pairs for a GPU's power and an NVLink counter across the outage. Expected figures come
from the store, read by this test's own SQL (tests/remote_write/test_receivers.py).

The test takes about 1.5 minutes of wall time (mostly waiting), in a file of its own so that the
suite's `--dist loadfile` runs it beside other files; it is marked `minute`.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collectors.remote_write.sender import RemoteWriteSender, read_position
from collectors.remote_write.series import SeriesEncoder
from collectors.remote_write.settings import RemoteWriteSettings
from monitor.backfill import backfill
from tests.peer_servers import Server, prometheus_receiver, victoria_receiver, write_url
from tests.remote_write.receivers import count_by_name, settle
from tests.remote_write.test_receivers import (
    RACK,
    SELECTOR,
    family_counts,
    link_bytes,
    power_of_gpu,
    raw_samples,
    store_samples,
)

pytestmark = pytest.mark.minute

OUTAGE_S = 62.0
"""Wall seconds both receivers stay down: the issue's minute, and a little more."""
CHUNK_S = 8
"""The recording lands in the store this many ticks at a time while the receivers are away."""


def wait(condition: Callable[[], bool], what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)  # the senders are threads of their own: poll their status


@contextlib.contextmanager
def receivers(tmp_path: Path) -> Iterator[list[Server]]:
    """Whichever real receivers are installed, each in its own directory, stopped however the test ends."""
    starters = [("victoria-metrics", victoria_receiver), ("prometheus", prometheus_receiver)]
    servers = []
    for binary, start in starters:
        if shutil.which(binary) is not None:
            (tmp_path / binary).mkdir()
            servers.append(start(tmp_path / binary))
    if not servers:
        pytest.skip("neither victoria-metrics nor prometheus is installed (.ci/run installs both)")
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(server) for server in servers]


def test_a_minute_without_receivers_loses_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first_end = int(time.time()) - 1
    backfill(store, 10, end_s=first_end, seed=6)
    with receivers(tmp_path) as servers:
        senders = []
        for server in servers:
            settings = RemoteWriteSettings(url=write_url(server), batch_size=30_000, interval_s=0.5)
            sender = RemoteWriteSender(store, settings, SeriesEncoder(RACK))
            sender.min_backoff_s, sender.max_backoff_s = 0.2, 4.0
            senders.append(sender)
        for sender in senders:
            sender.start()
        try:
            for sender in senders:
                wait(lambda s=sender: s.status.sent_through_ms == first_end * 1000, "the first stretch")
            for server in servers:
                server.__exit__(None, None, None)  # both receivers go away
            down_at, last = time.monotonic(), first_end
            while time.monotonic() - down_at < OUTAGE_S:  # the recording goes on meanwhile
                now = int(time.time()) - 1
                if now - last >= CHUNK_S:
                    backfill(store, now - last, end_s=now, seed=6)
                    last = now
                time.sleep(0.5)  # wall time is what this test is about
            for sender in senders:
                down = sender.status
                assert down.state == "retrying", down
                assert "connection refused" in down.message, down.message
                assert down.sent_through_ms == first_end * 1000, (
                    "the position moved while the receiver was away"
                )
                assert read_position(store, sender.settings.url) == first_end * 1000
            for server in servers:
                server.__enter__()  # back on the same port, over the same data
            for sender in senders:
                wait(lambda s=sender: s.status.sent_through_ms == last * 1000, "the backlog to drain")
        finally:
            for sender in senders:
                sender.stop()
        assert last - first_end >= OUTAGE_S - CHUNK_S  # the backlog spans the minute
        expected = store_samples(store)
        families = family_counts(store)
        power, tx = power_of_gpu(store, 9), link_bytes(store, 9, 7)
        at_s, window = last + 1, last - first_end + 30
        for sender, server in zip(senders, servers, strict=True):
            assert sender.status.dropped_samples == 0
            assert sender.status.sent_samples == expected, server.name
            assert settle(server, SELECTOR, at_s, window, expected, timeout_s=120) == expected, server.name
            got = count_by_name(server, SELECTOR, at_s, window)
            for name, n in families.items():
                assert got.get(name) == n, (server.name, name)
            # GPU T03.G2 is rack index 9: tray 3, tray-local gpu 1.
            gpu = f'rack="{RACK}",tray="3",gpu="1"'
            assert raw_samples(server, f"DCGM_FI_DEV_POWER_USAGE{{{gpu}}}", at_s, window) == power
            link = f'rackmon_nvlink_data_tx_bytes_total{{{gpu},link="7"}}'
            assert raw_samples(server, link, at_s, window) == tx
