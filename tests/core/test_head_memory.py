"""The head thins frames with age (issue 18): what one more tick costs, and that the views read the same.

Frames are the simulated GB300 NVL72 rack's (fast frame path: 72 GPUs, 1,296 links, 72 servers with
their latency histograms), one a second. Bounds come from the rack's shape and the schema's column
widths, not from the head's own accounting.
"""

from __future__ import annotations

import pytest

from collectors.clock import SimClock
from collectors.rack import GPUS, LINKS_PER_GPU
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from monitor.view.builder import SnapshotBuilder
from monitor.view.gpu_history import history_from_frames
from monitor.view.serving import ServingBuilder
from storage.frame import Frame
from storage.head import DETAIL_KEEP_MS, HIST_KEEP_MS, NVLINK_DETAIL, Head, arrow_bytes, thinning_head

T0_S = 1_780_000_000.0
TICKS = 130
"""Past the detail window (90 s) by 40 ticks: every age class of frame is in the head."""


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    clock = SimClock(T0_S)
    source = SimRackFrames(SimRack(11, "steady", clock, start=T0_S))
    out = []
    for i in range(TICKS):
        if i:
            clock.advance(1.0)
        out.append(source.poll(round(clock.now() * 1000)))
    return out


@pytest.fixture(scope="module")
def head(frames: list[Frame]) -> Head:
    head = thinning_head()
    for frame in frames:
        head.append(frame)
    return head


def old_tick_bound(frame: Frame) -> int:
    """What an old tick may cost: its small tables as they came, plus the NVLink byte counters.

    nvlink keeps ts (8 bytes), gpu (2), link (1), tx_kib and rx_kib (8 each) per link, each with a
    validity bitmap (a bit a row) and Arrow's 64-byte padding per buffer; serving_hist is gone.
    """
    small = sum(b.nbytes for name, b in frame.batches.items() if name not in ("nvlink", "serving_hist"))
    links = GPUS * LINKS_PER_GPU
    nvlink = links * (8 + 2 + 1 + 8 + 8) + 5 * (links // 8 + 1) + 10 * 64
    return small + nvlink


def test_one_more_tick_of_history_costs_an_old_frame_not_a_whole_one(frames: list[Frame], head: Head) -> None:
    newest = frames[-1].ts_ms
    bound = 0
    for frame in frames:
        age = newest - frame.ts_ms
        if age <= HIST_KEEP_MS:
            bound += frame.nbytes
        elif age <= DETAIL_KEEP_MS:
            bound += frame.nbytes - frame.batches["serving_hist"].nbytes
        else:
            bound += old_tick_bound(frame)
    whole = sum(f.nbytes for f in frames)
    assert head.nbytes <= bound, (head.nbytes, bound)
    # An old tick is a fifth of a whole one or less: holding whole frames would be 5x this head.
    assert head.nbytes * 3 < whole, (head.nbytes, whole)
    per_old_tick = old_tick_bound(frames[0])
    assert per_old_tick < 70_000, per_old_tick  # the cost of one more tick, stated in storage/head.py


def test_old_frames_keep_their_schema_and_the_views_read_them_unchanged(
    frames: list[Frame], head: Head
) -> None:
    held = head.frames()
    assert [f.ts_ms for f in held] == [f.ts_ms for f in frames]
    oldest = held[0]
    assert "serving_hist" not in oldest.batches
    assert oldest.batches["nvlink"].schema == frames[0].batches["nvlink"].schema
    assert oldest.batches["nvlink"].column("state").null_count == GPUS * LINKS_PER_GPU
    assert held[-1].batches["serving_hist"].num_rows == frames[-1].batches["serving_hist"].num_rows
    assert head.table("nvlink").num_rows == TICKS * GPUS * LINKS_PER_GPU
    # The GPU detail's 5-minute charts (NVLink from the byte counters) read the thinned head as the
    # frames as they came.
    for gpu in (0, 37, 71):
        assert history_from_frames(gpu, held).series == history_from_frames(gpu, frames).series


def test_builders_over_the_thinned_head_and_their_thinned_caches_agree_with_fresh_ones(
    frames: list[Frame],
) -> None:
    """A builder that followed the head tick by tick (its cache thinned as it went, over a head thinned
    as it went) builds what a new builder builds from the frames as they came."""
    head = thinning_head()
    rack, serving = SnapshotBuilder(), ServingBuilder()
    for i, frame in enumerate(frames):
        head.append(frame)
        if i % 3 and i < len(frames) - 1:
            continue  # a build every third tick (a loaded client skips ticks too) keeps the test quick
        window = head.latest(rack.frames_needed())
        snapshot = rack.build(window)
        served = serving.build(window, snapshot)
    fresh = SnapshotBuilder().build(frames[-rack.frames_needed() :])
    assert snapshot == fresh
    assert served == ServingBuilder().build(frames[-rack.frames_needed() :], fresh)
    assert served.instances and all(i.ttft_p50_s is not None for i in served.instances)


def test_the_head_holds_a_column_that_does_not_change_once_and_every_value_as_it_came(
    frames: list[Frame], head: Head
) -> None:
    """The rack's ids (GPU and link numbers, endpoints, histogram bounds) are the same every tick of the
    steady sim: the head stores each of those columns once (one buffer for all 130 frames). Every frame
    it holds still reads as the frame that came in, value for value, thinned columns apart."""
    held = head.frames()
    for table, column in (("nvlink", "gpu"), ("nvlink", "link"), ("gpu", "uuid"), ("serving", "endpoint")):
        data_buffers = {f.batches[table].column(column).buffers()[-1].address for f in held}
        assert len(data_buffers) == 1, (table, column, len(data_buffers))
    hist_bounds = {f.batches["serving_hist"].column("le").buffers()[-1].address for f in held[-20:]}
    assert len(hist_bounds) == 1
    newest = frames[-1].ts_ms
    for kept, came in zip(held, frames, strict=True):
        for name, batch in came.batches.items():
            if name == "serving_hist" and newest - came.ts_ms > HIST_KEEP_MS:
                continue
            thinned = (
                set(NVLINK_DETAIL) if name == "nvlink" and newest - came.ts_ms > DETAIL_KEEP_MS else set()
            )
            for field in batch.schema:
                if field.name not in thinned:
                    assert kept.batches[name].column(field.name).equals(batch.column(field.name)), (
                        came.ts_ms,
                        name,
                        field.name,
                    )


def test_one_more_old_tick_costs_its_timestamps_and_its_counters() -> None:
    """Hand count of what the oldest frame adds to a full head of the steady sim's rack: the columns that
    move every tick, at their schema widths (storage.schemas); ids and labels are the neighbour's.
    - nvlink, per link: ts, tx_kib, rx_kib, 8 bytes each;
    - gpu, per GPU: ts, energy_mj and the two NVLink counters (8 each), power_mw and mem_used_mib (4),
      three temperatures (2), two utilisations (1): 48 bytes;
    - serving, per server: ts and four token / request counters (8), running and waiting (4), the KV
      cache (2): 50 bytes; processes (every few ticks): ts, 8 bytes a GPU.
    Validity bitmaps and 64-byte padding come on top: the bound allows 10 %. Before the head shared
    unchanged columns, the oldest frame cost ~51 KB (the ids and labels once more each tick)."""
    clock = SimClock(T0_S)
    source = SimRackFrames(SimRack(11, "steady", clock, start=T0_S))
    head = thinning_head(capacity=120)
    for _ in range(120):
        clock.advance(1.0)
        head.append(source.poll(round(clock.now() * 1000)))
    held = head.frames()
    own = arrow_bytes(held) - arrow_bytes(held[1:])
    servers = 72
    hand = GPUS * LINKS_PER_GPU * 3 * 8 + GPUS * 48 + servers * 50 + GPUS * 8
    assert own <= hand * 1.1, (own, hand)
