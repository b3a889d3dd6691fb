"""The serving view's window percentiles, built tick by tick with its per-pair caches (issue 18's fast path).

Expected increases are a hand count over the simulated servers' own histograms: the steady simulator
never resets, so each bucket's increase over the window is its last count minus its first; a bucket
missing from any snapshot of the window is left out, as collectors.serving_math.bucket_increases does.
"""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from collectors.clock import SimClock
from collectors.serving_math import histogram_quantile
from collectors.sim.frames import SimRackFrames
from collectors.sim.rack import SimRack
from monitor.view.serving import InstanceView, ServingBuilder
from storage.frame import Frame

T0 = 1_790_000_000
TICKS = 25
WINDOW = 11
"""Frames in the builder's 10 s window at 1 Hz (both ends count)."""
CHECKED = {"ttft_p50_s": ("ttft", 0.5), "ttft_p99_s": ("ttft", 0.99), "itl_p50_s": ("itl", 0.5)}


_BY_FRAME: dict[int, dict[tuple[str, str], dict[float, float]]] = {}


def buckets(frame: Frame, endpoint: str, metric: str) -> dict[float, float]:
    """One histogram's counts in one frame, by bound (each frame read once)."""
    key = id(frame.batches["serving_hist"])
    if key not in _BY_FRAME:
        found: dict[tuple[str, str], dict[float, float]] = {}
        for r in frame.batches["serving_hist"].to_pylist():
            found.setdefault((r["endpoint"], r["metric"]), {})[r["le"]] = r["count"]
        _BY_FRAME[key] = found
    return _BY_FRAME[key].get((endpoint, metric), {})


def built_tick_by_tick(frames: list[Frame]) -> dict[str, InstanceView]:
    """The newest snapshot of a builder that saw every tick, as the live client's does."""
    builder = ServingBuilder()
    for i in range(1, len(frames) + 1):
        snapshot = builder.build(frames[max(0, i - builder.frames_needed()) : i])
    return {inst.endpoint: inst for inst in snapshot.instances}


def expected(window: list[Frame], endpoint: str, metric: str, q: float) -> float:
    snapshots = [buckets(f, endpoint, metric) for f in window]
    common = set(snapshots[0]).intersection(*snapshots[1:])
    return histogram_quantile(q, {le: snapshots[-1][le] - snapshots[0][le] for le in common})


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    source = SimRackFrames(SimRack(5, "steady", SimClock(T0), start=T0))
    return [source.poll((T0 + tick) * 1000) for tick in range(TICKS)]


def test_window_percentiles_match_a_hand_count_of_the_window(frames: list[Frame]) -> None:
    view = built_tick_by_tick(frames)
    window = frames[-WINDOW:]
    assert len(view) == 72
    for endpoint, inst in view.items():
        for field, (metric, q) in CHECKED.items():
            want = expected(window, endpoint, metric, q)
            assert getattr(inst, field) == pytest.approx(want, rel=1e-12), (endpoint, field)


def test_a_bucket_missing_from_one_snapshot_leaves_the_window(frames: list[Frame]) -> None:
    """One server's page lacks its median ttft bucket for one tick: that bound is out of the window's sum."""
    frames = list(frames)
    endpoint, middle = "vllm-03", len(frames) - 5
    first, last = buckets(frames[-WINDOW], endpoint, "ttft"), buckets(frames[-1], endpoint, "ttft")
    whole = {le: last[le] - first[le] for le in first}
    median = min(le for le in whole if whole[le] >= whole[max(whole)] / 2)  # the bucket the median is in
    hist = frames[middle].batches["serving_hist"]
    drop = pc.and_(
        pc.and_(pc.equal(hist["endpoint"], endpoint), pc.equal(hist["metric"], "ttft")),
        pc.equal(hist["le"], median),
    )
    frames[middle] = Frame(
        frames[middle].ts_ms, {**frames[middle].batches, "serving_hist": hist.filter(pc.invert(drop))}
    )
    inst = built_tick_by_tick(frames)[endpoint]
    window = frames[-WINDOW:]
    assert histogram_quantile(0.5, whole) != expected(window, endpoint, "ttft", 0.5), "the gap matters"
    for field, (metric, q) in CHECKED.items():
        assert getattr(inst, field) == pytest.approx(expected(window, endpoint, metric, q), rel=1e-12), field
