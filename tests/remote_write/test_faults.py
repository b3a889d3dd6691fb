"""Faulty receivers (a loopback aiohttp server): one clear state each, nothing lost that can be sent.

401 stops sending (the position kept, nothing dropped); 5xx is retried until the receiver recovers;
a receiver that hangs costs one timeout per try; 400 drops the refused batch and goes on; a URL where
nothing listens is retried. What the receiver gets is checked on the wire: the remote-write 1.0
headers, snappy block format, protobuf WriteRequest, labels sorted, bounded batches of whole ticks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import cramjam
import pytest
from aiohttp import web

from collectors.remote_write.sender import RemoteWriteSender, StopSending, read_position
from collectors.remote_write.series import SeriesEncoder
from collectors.remote_write.settings import RemoteWriteSettings
from collectors.remote_write.wire import WriteRequest
from monitor.backfill import backfill
from storage.reader import StoreReader
from tests.loopback import LoopbackServer
from tests.net.conftest import free_port
from tests.remote_write.test_receivers import store_samples

TICKS = 3


class Receiver(LoopbackServer):
    """POST /api/v1/write answering as `mode` says: ok, 401, 400, 500 or hang."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        self.requests: list[tuple[dict[str, str], list]] = []
        self.tries = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/write", self.write)

    async def write(self, request: web.Request) -> web.Response:
        self.tries += 1
        body = await request.read()
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "401":
            return web.Response(status=401, text="Unauthorized")
        if self.mode == "500":
            return web.Response(status=500, text="storage is sad")
        if self.mode == "400":
            return web.Response(status=400, text="out of bounds\nmore detail")
        # Decoded with cramjam's snappy *block* decoder: a framed stream would not parse.
        message = WriteRequest()
        message.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
        self.requests.append((dict(request.headers), list(message.timeseries)))
        return web.Response(status=204)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rw") / "store"
    backfill(root, TICKS, end_s=int(time.time()) - 2, seed=1)
    return root


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


def sender_for(store: Path, url: str, **settings) -> RemoteWriteSender:
    # Each test sends from the start: its own position (the URL differs per server port).
    sender = RemoteWriteSender(store, RemoteWriteSettings(url=url, **settings), SeriesEncoder("faults"))
    sender.min_backoff_s, sender.max_backoff_s = 0.05, 0.2
    return sender


def wait(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)  # the sender's thread: poll its status


def test_requests_on_the_wire(store: Path, receiver: Receiver) -> None:
    sender = sender_for(store, receiver.url("api/v1/write"), batch_size=1)
    while sender.send_once():
        pass
    assert len(receiver.requests) == TICKS  # batch_size 1: one whole tick per request, never less
    total = 0
    for headers, series in receiver.requests:
        assert headers["Content-Encoding"] == "snappy"
        assert headers["Content-Type"] == "application/x-protobuf"
        assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
        stamps = set()
        for ts in series:
            names = [label.name for label in ts.labels]
            assert names == sorted(names) and "__name__" in names
            times = [s.timestamp for s in ts.samples]
            assert times == sorted(times)
            stamps.update(times)
            total += len(times)
        assert len(stamps) == 1
    assert total == store_samples(store)
    assert sender.status.sent_through_ms == read_position(store, receiver.url("api/v1/write"))


def test_401_stops_with_one_line_and_keeps_the_position(store: Path, receiver: Receiver) -> None:
    receiver.mode = "401"
    sender = sender_for(store, receiver.url("api/v1/write"))
    before = sender.status.sent_through_ms
    sender.start()
    wait(lambda: sender.status.state == "stopped", "the stop")
    sender.stop()
    status = sender.status
    assert status.message.startswith("remote-write: 401 unauthorized")
    assert "nothing dropped" in status.message
    assert receiver.tries == 1  # not retried
    assert status.dropped_samples == 0 and status.sent_samples == 0
    assert read_position(store, receiver.url("api/v1/write")) == before  # None: never moved


def test_5xx_is_retried_until_the_receiver_recovers(store: Path, receiver: Receiver) -> None:
    receiver.mode = "500"
    sender = sender_for(store, receiver.url("api/v1/write"))
    sender.start()
    try:
        wait(lambda: sender.status.failures >= 3, "three failed tries")
        assert sender.status.state == "retrying"
        assert (
            "500 Internal Server Error" in sender.status.message and "storage is sad" in sender.status.message
        )
        assert sender.status.sent_samples == 0
        receiver.mode = "ok"
        wait(lambda: sender.status.sent_samples == store_samples(store), "everything sent")
    finally:
        sender.stop()
    assert sender.status.state == "ok" and sender.status.dropped_samples == 0


def test_a_receiver_that_hangs_times_out_and_stop_is_prompt(store: Path, receiver: Receiver) -> None:
    receiver.mode = "hang"
    sender = sender_for(store, receiver.url("api/v1/write"), timeout_s=0.5)
    sender.start()
    wait(lambda: sender.status.failures >= 2, "two timed-out tries")
    assert sender.status.state == "retrying"
    assert "did not answer in 0.5 s" in sender.status.message
    sender.stop(timeout_s=30)
    assert sender._thread is not None and not sender._thread.is_alive()


def test_400_drops_the_refused_batch_and_goes_on(store: Path, receiver: Receiver) -> None:
    receiver.mode = "400"
    sender = sender_for(store, receiver.url("api/v1/write"))
    while sender.send_once():
        pass
    status = sender.status
    assert status.dropped_samples == store_samples(store) and status.sent_samples == 0
    assert "400 Bad Request" in status.message and "out of bounds" in status.message
    assert "dropped" in status.message
    assert read_position(store, receiver.url("api/v1/write")) == status.sent_through_ms


def test_nothing_listening_is_retried_with_a_clear_state(store: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/write"
    sender = sender_for(store, url)
    sender.start()
    try:
        wait(lambda: sender.status.failures >= 2, "two refused tries")
    finally:
        sender.stop()
    assert sender.status.state == "retrying"
    assert f"cannot reach {url}: connection refused" in sender.status.message


def test_stop_codes_raise_from_send_once(store: Path, receiver: Receiver) -> None:
    receiver.mode = "401"
    with pytest.raises(StopSending, match="401 unauthorized"):
        sender_for(store, receiver.url("api/v1/write")).send_once()


def test_tables_limits_what_is_sent(store: Path, receiver: Receiver) -> None:
    sender = sender_for(store, receiver.url("api/v1/write"), tables=("gpu",))
    while sender.send_once():
        pass
    names = {label.value for _, series in receiver.requests for ts in series for label in ts.labels
             if label.name == "__name__"}  # fmt: skip
    assert names and all(n.startswith(("DCGM_", "rackmon_gpu_")) for n in names)
    with StoreReader(store) as reader:
        columns = [f.name for f in reader.sql("SELECT * FROM gpu LIMIT 0").schema]
        cells = " + ".join(f"count({c})" for c in columns if c not in ("ts", "gpu", "uuid", "tray"))
        expected = reader.sql(f"SELECT {cells} AS n FROM gpu").column("n")[0].as_py()
    assert sender.status.sent_samples == expected
