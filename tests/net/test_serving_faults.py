"""A server that answers but does not serve is not "ok": 'gpu lost' when a GPU it runs on is lost (the rack
snapshot's verdict), 'stalled' when it makes no tokens while requests wait and the queue does not drain.

The lost GPU and its server come from the simulator's ground truth (its gpu-lost scenario and workload
placement); the stall from a hand-made page sequence whose figures are worked out here.
"""

from __future__ import annotations

from collectors.clock import SimClock
from collectors.rack import gpu_label
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames, endpoint_name
from monitor.tui.widgets.serving_panel import counts_text, state_text
from monitor.view.builder import SnapshotBuilder
from monitor.view.serving import ServingBuilder
from storage.frame import Frame, batch_from_rows

T0 = 1_767_268_800_000


def test_the_server_on_a_lost_gpu_is_gpu_lost_with_its_gpu_named() -> None:
    clock = SimClock(T0 / 1000)
    rack = SimRack(7, "gpu-lost", clock, start=T0 / 1000, fault_at=5.0)
    source = SimRackFrames(rack)
    frames = [source.poll(T0 + tick * 1000) for tick in range(1, 21)]
    lost = rack.scenario.fault.gpu  # the simulator's own choice of GPU
    victim = next(i for i in rack.workload.instances if lost in i.gpus)
    snapshot = SnapshotBuilder().build(frames)
    serving = ServingBuilder().build(frames, snapshot)
    by_name = {i.endpoint: i for i in serving.instances}
    inst = by_name[endpoint_name(victim)]
    assert inst.state == "ok"  # its page still answers...
    assert inst.fault == "gpu lost"  # ...but it is not serving
    assert inst.fault_reason == f"{gpu_label(lost)} lost"
    assert state_text(inst) == "GPU LOST"
    others = [i for name, i in by_name.items() if name != endpoint_name(victim)]
    assert all(i.fault is None for i in others), [i for i in others if i.fault]
    assert serving.counts["gpu lost"] == 1 and serving.counts["ok"] == len(others)
    assert counts_text(serving) == f"{len(others)} ok, 1 gpu lost"
    # without the rack snapshot there is no verdict on GPUs: the server is not called lost
    alone = {i.endpoint: i for i in ServingBuilder().build(frames).instances}
    assert alone[endpoint_name(victim)].fault != "gpu lost"


def pages(tokens: list[int], waiting: list[int]) -> list[Frame]:
    """One server's pages, a second apart: its generated-token counter and its waiting gauge."""
    out = []
    for t, (tok, w) in enumerate(zip(tokens, waiting, strict=True)):
        row = {"ts": T0 + t * 1000, "endpoint": "a", "engine": "vllm", "gpus": "4", "state": 0}
        row |= {"generation_tokens": tok, "prompt_tokens": 100 * t, "running": 8, "waiting": w}
        out.append(Frame(T0 + t * 1000, {"serving": batch_from_rows("serving", [row])}))
    return out


def test_no_tokens_while_the_queue_grows_is_stalled() -> None:
    # 5 s serving 1,000 tok/s, then the counter stops for 11 pages while waiting climbs 100 a second.
    tokens = [1_000 * t for t in range(5)] + [4_000] * 11
    waiting = [0] * 5 + [100 * k for k in range(1, 12)]
    (inst,) = ServingBuilder(window_s=10).build(pages(tokens, waiting)).instances
    # window: the last 11 pages (10 s); waiting went from 100 to 1,100
    assert inst.tokens_per_s == 0
    assert inst.fault == "stalled"
    assert inst.fault_reason == "no tokens in 10 s, 1,100 waiting (+1,000)"
    assert state_text(inst) == "STALLED"


def test_a_server_working_off_its_queue_or_idle_is_ok() -> None:
    draining = ServingBuilder(window_s=10).build(pages([500] * 12, list(range(120, 0, -10)))).instances[0]
    assert draining.fault is None  # no tokens counted, but the queue shrinks: it is being served
    idle = ServingBuilder(window_s=10).build(pages([500] * 12, [0] * 12)).instances[0]
    assert idle.fault is None and idle.status == "ok"
    serving = ServingBuilder(window_s=10).build(pages([100 * t for t in range(12)], [5] * 12)).instances[0]
    assert serving.fault is None and serving.tokens_per_s == 100
