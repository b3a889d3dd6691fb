"""The simulated inference workload: LLM serving instances placed on the rack's GPUs.

Defaults follow the MLPerf-style claim the rack is bought for: one Llama-2-70B instance per GPU (72),
each generating ~15.2 k tokens/s, ~1.1 M tokens/s for the rack. Each instance keeps what its inference
server would report on /metrics (token and request counters, running/waiting gauges, KV-cache use,
TTFT/ITL/e2e histograms with vLLM's buckets); serving those pages is another module's job.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from collectors.rack import GPUS
from collectors.sim.gpu import MEM_TOTAL_MIB, TYPICAL_PREFILL_SHARE
from collectors.sim.histogram import VLLM_E2E_BOUNDS, VLLM_ITL_BOUNDS, VLLM_TTFT_BOUNDS, Histogram


@dataclass(frozen=True)
class ServingProfile:
    """What one GPU's worth of serving looks like when healthy (MLPerf v6.0 Llama-2-70B on GB300)."""

    model: str = "llama-2-70b"
    capacity_tok_s: float = 15_500.0
    """Generated tokens/s one GPU sustains at full clocks."""
    offered_load: float = 0.98
    """Offered load as a fraction of capacity; ~15.2 k tok/s per GPU served."""
    prompt_len: float = 684.0
    """Mean prompt tokens per request (assumed; MLPerf counts only generated tokens)."""
    output_len: float = 272.0
    """Mean generated tokens per request (MLPerf logs: ~272)."""
    ttft_p50_s: float = 0.187
    ttft_p99_s: float = 0.276
    itl_p50_s: float = 0.0235
    itl_p99_s: float = 0.0405
    e2e_sigma: float = 0.45
    """Log-normal spread of e2e latency, wide because output lengths vary."""
    weights_mib: float = 33_400.0
    """Llama-2-70B in FP4, whole model (split over the instance's GPUs)."""
    kv_kib_per_token: float = 160.0
    """FP8 KV cache per token for the whole model: 80 layers x 8 KV heads x 128 x 2 (K, V) bytes."""
    gpu_memory_utilization: float = 0.90
    """vLLM preallocates this share of HBM for weights + KV pool, so memory used is flat under load."""
    allreduce_kib_per_token: float = 2_560.0
    """Per generated token, each of 80 layers all-reduces 2 x 8192 bf16 activations (x 2(tp-1)/tp per GPU)."""
    kv_transfer_kib_per_prompt_token: float = 160.0
    """tp=1 instances exchange KV cache (prefill -> decode hand-off) over NVLink instead of all-reduces."""
    prefix_hit: float = 0.4
    """Share of prompt tokens served from the prefix cache (assumed: chat traffic whose requests share
    system prompts and earlier turns)."""
    prefill_share: float = TYPICAL_PREFILL_SHARE
    """Mean share of a loaded GPU's busy time in prefill (assumed; see collectors.sim.gpu)."""
    prompt_spread: float = 0.35
    """Log-normal spread of the prompt tokens admitted in one step (prompt lengths vary widely, as in
    MLPerf's OpenOrca set): it moves the batch mix, hence power, utilisation and KV-transfer traffic."""


def _sigma(p50: float, p99: float) -> float:
    return math.log(p99 / p50) / 2.3263478740408408


@dataclass
class Instance:
    """One inference server (one /metrics endpoint) and the counters it would expose."""

    index: int
    name: str
    engine: str
    model: str
    gpus: tuple[int, ...]
    """Rack GPU indices it runs on (tensor-parallel ranks in order)."""
    answering: bool = True
    """False when the server has stopped answering HTTP (the endpoint-down and restart scenarios)."""
    process_running: bool = True
    """False while its server process is stopped (restart scenario): its GPUs hold no memory."""
    generated_lifetime: int = 0
    """Ground truth: tokens generated since the simulation started; a restart does not zero it."""
    prompt_tokens: int = 0
    generation_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens served from the prefix cache (part of prompt_tokens)."""
    requests_finished: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0})
    preemptions: int = 0
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0
    """0..1, as vllm:kv_cache_usage_perc."""
    tokens_per_s: float = 0.0
    """Generated tokens/s over the last step."""
    activity: float = 0.0
    """Fraction of its capacity it used over the last step (drives its GPUs' load)."""
    ttft: Histogram = field(init=False)
    itl: Histogram = field(init=False)
    e2e: Histogram = field(init=False)
    queue: Histogram = field(init=False)
    """Time a request waits before it is scheduled (vllm:request_queue_time_seconds)."""
    prefill: Histogram = field(init=False)
    """Time from scheduling to the first token (vllm:request_prefill_time_seconds): TTFT = queue + prefill."""
    efficiency: float = 1.0
    backlog: float = 0.0
    queue_s: float = 0.0
    """Smoothed time a request waits before prefill (TTFT reflects the queue of the last few seconds)."""
    _carry: list[float] = field(default_factory=lambda: [0.0] * 5)

    tp: int = field(init=False)
    """Tensor-parallel size (len(gpus))."""

    def __post_init__(self) -> None:
        """Derive tp from the placement."""
        self.tp = len(self.gpus)

    @property
    def requests_ok(self) -> int:
        """Finished requests, all reasons."""
        return sum(self.requests_finished.values())

    def stop(self) -> None:
        """The server process exits: no page, no work, its queue dropped."""
        self.answering = False
        self.process_running = False

    def restart(self) -> None:
        """The server starts again: every counter, gauge and histogram it exposes begins from 0."""
        self.answering = self.process_running = True
        self.prompt_tokens = self.generation_tokens = self.cached_tokens = self.preemptions = 0
        self.requests_finished = dict.fromkeys(self.requests_finished, 0)
        self.running = self.waiting = 0
        self.kv_cache_usage = self.tokens_per_s = self.activity = 0.0
        self.backlog = self.queue_s = 0.0
        self._carry = [0.0] * len(self._carry)
        self.ttft = Histogram(self.ttft.bounds, self.ttft.sigma)
        self.itl = Histogram(self.itl.bounds, self.itl.sigma)
        self.e2e = Histogram(self.e2e.bounds, self.e2e.sigma)
        self.queue = Histogram(self.queue.bounds, self.queue.sigma)
        self.prefill = Histogram(self.prefill.bounds, self.prefill.sigma)

    def _take(self, slot: int, amount: float) -> int:
        # Fractional carry keeps integer counters exact on average and deterministic.
        total = self._carry[slot] + amount
        whole = int(total)
        self._carry[slot] = total - whole
        return whole


class Workload:
    """All serving instances of the rack and how they advance each step."""

    def __init__(
        self,
        seed: int = 0,
        *,
        tp: int = 1,
        engines: Sequence[str] = ("vllm",),
        profile: ServingProfile | None = None,
    ) -> None:
        """Place 72 / tp instances on consecutive GPUs of each tray (tp must divide 4)."""
        if tp not in (1, 2, 4):
            raise ValueError(f"tensor-parallel size {tp} must be 1, 2 or 4 (instances stay within a tray)")
        if not engines:
            raise ValueError("at least one engine name is needed")
        self.tp = tp
        self.profile = profile or ServingProfile()
        rng = random.Random(f"workload-{seed}")
        p = self.profile
        self._ttft_sigma = _sigma(p.ttft_p50_s, p.ttft_p99_s)
        self._itl_sigma = _sigma(p.itl_p50_s, p.itl_p99_s)
        self.instances: list[Instance] = []
        for index, first in enumerate(range(0, GPUS, tp)):
            engine = engines[index % len(engines)]
            inst = Instance(
                index=index,
                name=f"{engine}-{index:02d}",
                engine=engine,
                model=p.model,
                gpus=tuple(range(first, first + tp)),
                efficiency=1.0 + 0.03 * (rng.random() - 0.5) * 2,
            )
            inst.ttft = Histogram(VLLM_TTFT_BOUNDS, self._ttft_sigma)
            inst.itl = Histogram(VLLM_ITL_BOUNDS, self._itl_sigma)
            inst.e2e = Histogram(VLLM_E2E_BOUNDS, p.e2e_sigma)
            # vLLM's queue and prefill histograms share the e2e request-latency bounds
            inst.queue = Histogram(VLLM_E2E_BOUNDS, self._ttft_sigma)
            inst.prefill = Histogram(VLLM_E2E_BOUNDS, self._ttft_sigma)
            self.instances.append(inst)
        self.instance_of_gpu = [i.index for i in self.instances for _ in i.gpus]
        """Rack GPU index -> index of the instance running on it."""
        pool_mib = p.gpu_memory_utilization * MEM_TOTAL_MIB - p.weights_mib / tp - 4_000.0
        self._kv_capacity_tokens = pool_mib * 1024.0 / (p.kv_kib_per_token / tp)
        self.mem_used_mib = round(p.gpu_memory_utilization * MEM_TOTAL_MIB)
        """HBM a serving process holds on each of its GPUs (weights + preallocated KV pool)."""

    def process_on(self, gpu: int) -> bool:
        """Whether a serving process runs on rack GPU `gpu` (holding its HBM)."""
        return self.instances[self.instance_of_gpu[gpu]].process_running

    @property
    def tokens_per_s(self) -> float:
        """Rack generated tokens/s over the last step."""
        return sum(i.tokens_per_s for i in self.instances)

    def step(
        self, dt: float, caps: Sequence[float], rng: random.Random
    ) -> tuple[list[float], list[float], list[float]]:
        """Advance every instance `dt` seconds given each GPU's speed cap (0 = lost, 1 = full clocks).

        Returns:
            (load, traffic, mix): per rack GPU, the share of its capacity in use (0..1), its NVLink
            traffic per direction in KiB/s, and the share of its busy time in prefill.
        """
        p = self.profile
        load = [0.0] * len(caps)
        traffic = [0.0] * len(caps)
        mix = [0.0] * len(caps)
        spread = p.prompt_spread
        for inst in self.instances:
            arrivals = p.capacity_tok_s * inst.tp * inst.efficiency * p.offered_load / p.output_len
            offered = arrivals * dt * (1.0 + (rng.random() - 0.5) * 0.08)
            # Prompt tokens admitted this step relative to the mean (mean 1): the batch composition.
            prompts = rng.lognormvariate(-spread * spread / 2.0, spread)
            if not inst.answering:
                # A hung or stopped server: no progress, no new requests accepted, gauges frozen.
                inst.tokens_per_s = 0.0
                inst.activity = 0.0
                continue
            gpus = inst.gpus
            speed = caps[gpus[0]] if len(gpus) == 1 else min(caps[g] for g in gpus)
            capacity_req = p.capacity_tok_s * inst.tp * inst.efficiency * speed * dt / p.output_len
            inst.backlog += offered
            served = min(inst.backlog, capacity_req)
            inst.backlog = min(inst.backlog - served, 20_000.0 * inst.tp)  # beyond that, rejected
            inst.activity = served / capacity_req if capacity_req > 0 else 0.0
            self._account(inst, dt, served, arrivals, speed, prompts)
            per_gpu = self._traffic_kib_s(inst, served / dt, prompts)
            share = min(0.5, max(0.05, p.prefill_share * prompts))
            for g in inst.gpus:
                # Ranks faster than the slowest one wait for it at each all-reduce: less of their own
                # capacity is used, so they draw less power at full clocks.
                load[g] = inst.activity * speed / caps[g] if caps[g] > 0 else 0.0
                traffic[g] = per_gpu
                mix[g] = share
        return load, traffic, mix

    def _account(
        self, inst: Instance, dt: float, served: float, arrivals: float, speed: float, prompts: float
    ) -> None:
        p = self.profile
        requests = inst._take(0, served)
        generated = inst._take(1, served * p.output_len)
        inst.prompt_tokens += inst._take(2, served * p.prompt_len * prompts)
        inst.cached_tokens += inst._take(4, served * p.prompt_len * prompts * p.prefix_hit)
        length_capped = inst._take(3, requests * 0.12)
        inst.requests_finished["length"] += length_capped
        inst.requests_finished["stop"] += requests - length_capped
        inst.generation_tokens += generated
        inst.generated_lifetime += generated
        inst.tokens_per_s = generated / dt
        inst.queue_s += (inst.backlog / arrivals - inst.queue_s) * 0.1
        ttft = round(p.ttft_p50_s + inst.queue_s, 3)  # ms resolution lets steady steps share a median
        itl = p.itl_p50_s / max(speed, 0.05)
        inst.ttft.observe(requests, ttft)
        inst.itl.observe(max(0, generated - requests), itl)
        inst.e2e.observe(requests, ttft + itl * (p.output_len - 1))
        inst.queue.observe(requests, max(round(inst.queue_s, 3), 0.001))
        inst.prefill.observe(requests, p.ttft_p50_s)
        # Little's law: requests in decode = generated tokens/s x time per token.
        inst.running = round(served / dt * p.output_len * itl * math.exp(self._itl_sigma**2 / 2))
        inst.waiting = round(inst.backlog)
        context = p.prompt_len + p.output_len / 2
        inst.kv_cache_usage = min(1.0, inst.running * context / self._kv_capacity_tokens)
        if inst.kv_cache_usage > 0.95:
            inst.preemptions += 1

    def _traffic_kib_s(self, inst: Instance, requests_s: float, prompts: float) -> float:
        p = self.profile
        if inst.tp == 1:
            return requests_s * p.prompt_len * prompts * p.kv_transfer_kib_per_prompt_token
        share = 2.0 * (inst.tp - 1) / inst.tp
        return requests_s * p.output_len * p.allreduce_kib_per_token * share
