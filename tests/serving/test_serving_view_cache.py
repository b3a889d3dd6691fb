"""The simulated rack end to end: the new serving names reach the serving view as a prefix-cache hit
rate and a queue-time median, checked against the simulator's own counters and histograms."""

from __future__ import annotations

import pytest

from collectors.clock import SimClock
from collectors.sim.frames import SimRackFrames, endpoint_name
from collectors.sim.rack import SimRack
from monitor.tui.screens.serving import cell
from monitor.view.serving import ServingBuilder

T0 = 1_790_000_000


def test_cache_hit_and_queue_median_from_the_simulated_servers() -> None:
    rack = SimRack(7, "steady", SimClock(T0), start=T0, engines=("vllm", "sglang", "trtllm"), tp=4)
    source = SimRackFrames(rack)
    frames = []
    first: dict[str, tuple[int, int]] = {}
    for tick in range(6):
        frames.append(source.poll((T0 + tick) * 1000))
        if tick == 0:  # the window's first frame (the builder's window is 10 s: all six)
            first = {endpoint_name(i): (i.cached_tokens, i.prompt_tokens) for i in rack.workload.instances}
    snapshot = ServingBuilder().build(frames)
    by_name = {inst.endpoint: inst for inst in snapshot.instances}
    for inst in rack.workload.instances:
        view = by_name[endpoint_name(inst)]
        cached0, prompt0 = first[endpoint_name(inst)]
        # the simulator's own counters over the window, and the share it was told to serve from cache
        window = (inst.cached_tokens - cached0) / (inst.prompt_tokens - prompt0)
        assert view.cache_hit == pytest.approx(window, rel=1e-9)
        assert view.cache_hit == pytest.approx(rack.workload.profile.prefix_hit, abs=0.01)
        assert view.queue_p50_s is not None and 0 < view.queue_p50_s <= 0.3  # vLLM's first bound
        assert cell(view, "cache_hit") == f"{view.cache_hit * 100:.0f}%"


def test_a_missing_bucket_count_is_stepped_over_as_the_counter_primitive_does() -> None:
    """A middle frame whose ttft counts for one endpoint are missing (NaN) is a gap, not two resets: the
    window's increase per bucket is last - first (a hand count; the steady simulator never resets), so
    the median equals the one over those increases. Summing per-pair steps alone would lose both steps
    around the gap."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from collectors.serving_math import histogram_quantile
    from storage.frame import Frame

    rack = SimRack(7, "steady", SimClock(T0), start=T0)
    source = SimRackFrames(rack)
    frames = [source.poll((T0 + tick) * 1000) for tick in range(6)]
    name = "vllm-00"

    def ttft(frame: Frame) -> dict[float, float]:
        rows = frame.batches["serving_hist"].to_pylist()
        return {r["le"]: r["count"] for r in rows if r["endpoint"] == name and r["metric"] == "ttft"}

    expected = {le: ttft(frames[-1])[le] - count for le, count in ttft(frames[0]).items()}
    hist = frames[3].batches["serving_hist"]
    mine = pc.and_(pc.equal(hist["endpoint"], name), pc.equal(hist["metric"], "ttft"))
    counts = pc.if_else(mine, pa.scalar(float("nan")), pc.cast(hist["count"], pa.float64()))
    gap = hist.set_column(hist.schema.get_field_index("count"), "count", counts)
    frames[3] = Frame(frames[3].ts_ms, {**frames[3].batches, "serving_hist": gap})
    view = {i.endpoint: i for i in ServingBuilder().build(frames).instances}[name]
    assert view.ttft_p50_s == pytest.approx(histogram_quantile(0.5, expected), rel=1e-12)
