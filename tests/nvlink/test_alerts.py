"""Alerts that mean what they say: resets are not growth; ECC and stragglers alert."""

from __future__ import annotations

from collectors.alert_rules import AlertRule
from collectors.alerts import AlertEngine
from collectors.clock import SimClock
from collectors.rack import GPUS, LINKS_PER_GPU
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from storage.frame import Frame, batch_from_columns
from storage.schemas import EventKind

T0_MS = 1_760_000_000_000


def _link_frame(tick: int, symbol_errors: int) -> Frame:
    """GPU 0 link 2 with `symbol_errors`; other counters 0."""
    cols = {
        "ts": [T0_MS + tick * 1000],
        "gpu": [0],
        "link": [2],
        "state": [1],
        "tx_kib": [0],
        "rx_kib": [0],
        "rx_errors": [0],
        "symbol_errors": [symbol_errors],
        "recovery": [0],
        "recovery_failed": [0],
    }
    return Frame(T0_MS + tick * 1000, {"nvlink": batch_from_columns("nvlink", cols)})


def _events(engine: AlertEngine, frames: list[Frame], code: AlertRule) -> list[tuple[int, str]]:
    out = []
    for f in frames:
        out += [(f.ts_ms, e["kind"]) for e in engine.evaluate(f) if e["code"] == code]
    return out


def test_a_counter_reset_is_not_growth_and_the_alert_clears_a_window_after_the_last_real_growth() -> None:
    # Growth at ticks 1, 2, 3 (fires: 3 samples), a reset to 0 at tick 10, nothing after.
    values = [0, 5, 9, 14] + [14] * 6 + [0] * 60
    events = _events(AlertEngine(), [_link_frame(t, v) for t, v in enumerate(values)], AlertRule.LINK_ERRORS)
    assert events[0] == (T0_MS + 3000, EventKind.ALERT)
    # The last real growth is at tick 3: with the 60 s window the alert clears at tick 63, not 70.
    assert events[1] == (T0_MS + 63_000, EventKind.ALERT_CLEARED)
    assert len(events) == 2


def _gpu_frames(rack: SimRack, clock: SimClock, seconds: int) -> list[Frame]:
    source = SimRackFrames(rack, serving=False)
    frames = []
    for _ in range(seconds):
        clock.advance(1.0)
        frames.append(source.poll(round(clock.now() * 1000)))
    return frames


def test_uncorrectable_ecc_growth_alerts_with_the_count() -> None:
    clock = SimClock(T0_MS / 1000)
    rack = SimRack(seed=2, clock=clock, start=T0_MS / 1000)
    engine = AlertEngine()
    frames = _gpu_frames(rack, clock, 3)
    assert not _events(engine, frames, AlertRule.ECC_UNCORRECTED)
    rack.gpus[9].ecc_uncorrected = 558  # 0 -> 558, as seen in the issue
    fired = [e for f in _gpu_frames(rack, clock, 2) for e in engine.evaluate(f)]
    ecc = [e for e in fired if e["code"] == AlertRule.ECC_UNCORRECTED]
    assert [(e["kind"], e["gpu"]) for e in ecc] == [(EventKind.ALERT, 9)]
    assert "+558" in ecc[0]["detail"]


def test_a_straggler_gpu_alerts_and_a_steady_rack_names_nobody() -> None:
    for scenario, expect in (("steady", False), ("straggler", True)):
        clock = SimClock(T0_MS / 1000)
        rack = SimRack(seed=5, scenario=scenario, clock=clock, start=T0_MS / 1000, fault_at=5)
        engine = AlertEngine()
        fired = [e for f in _gpu_frames(rack, clock, 40) for e in engine.evaluate(f)]
        slow = [e for e in fired if e["code"] == AlertRule.STRAGGLER and e["kind"] == EventKind.ALERT]
        if not expect:
            assert slow == []
            continue
        fault = rack.scenario.fault
        assert [e["gpu"] for e in slow] == [fault.gpu]
        clock_now = rack.gpus[fault.gpu].sm_mhz
        assert f"SM clock {clock_now} MHz" in slow[0]["detail"]
        assert 0 <= fault.gpu < GPUS and LINKS_PER_GPU == 18
