"""The sender fed from the recording's seals in memory (collectors.remote_write.tap) sends exactly what the
sender reading the store back sends: the same samples in the same series, every sample of the store once.

Two senders run over one recording at the same time, each to its own loopback receiver: one with a tap
on the writer (as `monitor collect` makes it), one reading the store (the path a backlog takes). The
recording seals every 3 ticks and one seal spans an hour boundary (two segments: the tap lets it go and
the sender reads the store there); requests are 2 ticks, so they start in the middle of seals and cross
them.
"""

from __future__ import annotations

from pathlib import Path

from collectors.remote_write.sender import RemoteWriteSender
from collectors.remote_write.series import SeriesEncoder
from collectors.remote_write.settings import TABLES_SENT, RemoteWriteSettings
from collectors.remote_write.tap import SealedTap
from monitor.backfill import SimFrames
from storage.writer import StoreWriter
from tests.remote_write.test_faults import Receiver, wait
from tests.remote_write.test_receivers import store_samples

HOUR_S = 3600
START_S = 1_800_000_000 // HOUR_S * HOUR_S - 7
"""Ticks start 7 s before an hour boundary: the third seal (3 ticks each) spans it."""
TICKS = 16


def received(receiver: Receiver) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    """Every series the receiver got (its sorted labels) -> its samples, in the order they arrived."""
    got: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for _, series in receiver.requests:
        for one in series:
            key = tuple((label.name, label.value) for label in one.labels)
            got.setdefault(key, []).extend((s.timestamp, s.value) for s in one.samples)
    return got


def test_a_sender_fed_from_the_seals_sends_what_the_store_holds(tmp_path: Path) -> None:
    root = tmp_path / "store"
    end_s = START_S + TICKS
    frames = SimFrames(seed=3, scenario="steady", start_s=START_S, fast=True)
    with (
        Receiver() as tapped_rx,
        Receiver() as read_rx,
        StoreWriter(root, flush_interval_s=3, compaction="off") as writer,
    ):
        tap = SealedTap(TABLES_SENT, writer.live.current.sealed_through_ms)
        writer.seal_listeners.append(tap)
        senders = []
        for rx, with_tap in ((tapped_rx, True), (read_rx, False)):
            # 2 ticks a request once the first request has said how many samples a tick holds
            settings = RemoteWriteSettings(url=rx.url("api/v1/write"), batch_size=2 * 8_000)
            sender = RemoteWriteSender(
                root, settings, SeriesEncoder("tap"), tap=tap if with_tap else None, clock=lambda: end_s
            )
            senders.append(sender)
        try:
            for tick, frame in zip(range(TICKS), frames, strict=False):
                writer.store(frame)
                if tick % 2:  # a sender keeping up: it looks every other tick
                    for sender in senders:
                        while sender.send_once():
                            pass
            writer.flush()
            for sender in senders:
                while sender.send_once():
                    pass
        finally:
            frames.close()
            for sender in senders:
                sender.stop()
        tapped, read = senders
    want = store_samples(root)
    assert tapped.status.sent_samples == read.status.sent_samples == want
    assert tapped.status.sent_through_ms == read.status.sent_through_ms == (end_s - 1) * 1000
    assert received(tapped_rx) == received(read_rx)
    assert sum(len(v) for v in received(tapped_rx).values()) == want
    # The tap carried most requests; the store was read before the first seal was tapped whole and
    # across the seal that spans the hour.
    assert tapped.tapped_requests >= 4 and tapped.read_requests >= 1
    assert read.tapped_requests == 0
    assert tap.held_seals == 0  # every seal was let go once sent: memory bounded by what is unsent


def test_a_seal_wakes_the_sender(tmp_path: Path) -> None:
    """With the tap, each seal is sent when it lands, not at the sender's next look (`interval`, an hour
    here): a collector stopping moments after a seal has sent it."""
    root = tmp_path / "store"
    frames = SimFrames(seed=4, scenario="steady", start_s=START_S, fast=True)
    with Receiver() as rx, StoreWriter(root, flush_interval_s=3, compaction="off") as writer:
        tap = SealedTap(TABLES_SENT, writer.live.current.sealed_through_ms)
        writer.seal_listeners.append(tap)
        settings = RemoteWriteSettings(url=rx.url("api/v1/write"), interval_s=3600)
        sender = RemoteWriteSender(
            root, settings, SeriesEncoder("wake"), tap=tap, clock=lambda: START_S + TICKS
        )
        tap.on_seal = sender.wake
        sender.start()
        try:
            for tick, frame in zip(range(TICKS), frames, strict=False):
                writer.store(frame)
                sealed = writer.live.current.sealed_through_ms
                if tick % 3 == 0 and sealed is not None:  # a seal has just landed: it is sent
                    wait(lambda s=sealed: sender.status.sent_through_ms == s, f"the seal through {sealed}")
        finally:
            frames.close()
            sender.stop()
    assert sender.status.requests >= 4 and sender.status.dropped_samples == 0
