"""The serving workload: placement, counters and latency histograms an inference server would report."""

from __future__ import annotations

import math

import pytest

from collectors.clock import SimClock
from collectors.sim import SimRack, Workload
from collectors.sim.histogram import VLLM_TTFT_BOUNDS, Histogram

from .conftest import T0


def test_default_is_one_instance_per_gpu_and_tp4_is_one_per_tray():
    assert [i.gpus for i in Workload().instances] == [(g,) for g in range(72)]
    tp4 = Workload(tp=4, engines=("vllm", "sglang", "trtllm"))
    assert len(tp4.instances) == 18 and tp4.instances[5].gpus == (20, 21, 22, 23)
    assert [i.engine for i in tp4.instances[:4]] == ["vllm", "sglang", "trtllm", "vllm"]
    assert tp4.instance_of_gpu[22] == 5
    with pytest.raises(ValueError, match="must be 1, 2 or 4"):
        Workload(tp=3)


def test_counters_and_gauges_look_like_an_mlperf_server():
    rack = SimRack(seed=2, clock=SimClock(T0))
    rack.advance_to(T0 + 120)
    for inst in rack.workload.instances:
        assert 13_500 < inst.generation_tokens / 120 < 16_500
        assert inst.prompt_tokens > 2 * inst.generation_tokens
        assert inst.generation_tokens / inst.requests_ok == pytest.approx(272, rel=0.02)
        assert inst.requests_finished["stop"] > inst.requests_finished["length"] > 0
        assert 250 < inst.running < 600 and 0 <= inst.waiting < 100 and 0.1 < inst.kv_cache_usage < 0.5
        assert inst.ttft.count == inst.e2e.count == inst.requests_ok
        assert inst.itl.count == inst.generation_tokens - inst.requests_ok
        assert 0.15 < inst.ttft.quantile(0.5) < 0.25 and 0.018 < inst.itl.quantile(0.5) < 0.03


def test_histogram_buckets_are_cumulative_monotonic_and_end_at_count():
    h = Histogram(VLLM_TTFT_BOUNDS, 0.2)
    previous = [0] * (len(VLLM_TTFT_BOUNDS) + 1)
    for step in range(200):
        h.observe(37, 0.19 if step < 100 else 1.7)
        counts = [c for _, c in h.buckets()]
        assert counts == sorted(counts) and counts[-1] == h.count
        assert all(a >= b for a, b in zip(counts, previous, strict=True))
        previous = counts
    assert h.buckets()[-1][0] == math.inf and h.count == 7400
    assert h.sum == pytest.approx(3700 * (0.19 + 1.7) * math.exp(0.02), rel=1e-9)
    assert 0.1 < h.quantile(0.25) < 0.25 and 1.0 < h.quantile(0.75) < 2.5


def test_advance_to_steps_on_a_fixed_grid():
    rack = SimRack(seed=1, clock=SimClock(T0), step_s=0.5)
    assert rack.advance_to(T0 + 10.2) == 20 and rack.time == T0 + 10
    assert rack.advance_to(T0 + 10.49) == 0 and rack.advance_to(T0 + 10.5) == 1
    with pytest.raises(ValueError, match="step_s"):
        SimRack(clock=SimClock(T0), step_s=0)
