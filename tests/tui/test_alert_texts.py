"""Alert texts: a temperature or power alert quotes the reading its GPU's cell shows (the newest
sample, not the one it fired at); a cleared tokens/s alert never reads '(0% lower)'; the tray drift
rule warns for the simulator's cooling fault on the tray the simulator degraded, and stays quiet on a
steady rack and on a tray whose servers were restarted (it warms from work, not from its coolant)."""

from __future__ import annotations

from tui_frames import rack_frame

from collectors.alert_rules import AlertRule, AlertRules, Threshold, versus_text
from collectors.alerts import AlertEngine
from collectors.clock import SimClock
from collectors.sim import SimRack
from collectors.sim.frames import SimRackFrames
from monitor.view.alerts_view import AlertTracker
from storage.frame import Frame, batch_from_rows
from storage.schemas import EventKind

OFF = {name: Threshold(on=0, off=0, enabled=False) for name in AlertRules.names()}
T0_S = 1_767_268_800.0


def with_events(frame: Frame, events: list[dict]) -> Frame:
    """`frame` carrying `events` (as the recorder hands them to the next tick's frame)."""
    rows = [{"ts": frame.ts_ms, **e} for e in events]
    return Frame(frame.ts_ms, {**frame.batches, "events": batch_from_rows("events", rows)})


def test_a_temperature_alert_quotes_the_newest_sample_of_its_gpu():
    engine = AlertEngine(AlertRules(**{**OFF, "temp_margin": Threshold(on=5, off=8)}))
    tracker = AlertTracker()
    fired = rack_frame(1, overrides={3: {"temp_margin_c": 4, "temp_gpu_c": 84}}, nvlink=False)
    events = engine.evaluate(fired)
    assert [e["code"] for e in events] == [AlertRule.TEMP_MARGIN]
    # The GPU keeps warming: the next samples read 86 C and 2 C to slowdown, as its cell will show.
    later = rack_frame(2, overrides={3: {"temp_margin_c": 2, "temp_gpu_c": 86}}, nvlink=False)
    tracker.update([with_events(later, events)])
    (alert,) = tracker.newest_first()
    assert alert.text == "T01.G4 temp_margin: 2 C to slowdown (GPU at 86 C)"
    newest = rack_frame(3, overrides={3: {"temp_margin_c": 1, "temp_gpu_c": 87}}, nvlink=False)
    tracker.update([newest])
    assert tracker.newest_first()[0].text == "T01.G4 temp_margin: 1 C to slowdown (GPU at 87 C)"


def test_a_power_alert_quotes_the_newest_sample_of_its_gpu():
    engine = AlertEngine(AlertRules(**{**OFF, "power": Threshold(on=0.98, off=0.93)}))
    tracker = AlertTracker()
    limit = 1_400_000
    events = engine.evaluate(rack_frame(1, overrides={0: {"power_mw": 1_380_000, "power_limit_mw": limit}}))
    later = rack_frame(2, overrides={0: {"power_mw": 1_395_000, "power_limit_mw": limit}})
    tracker.update([with_events(later, events)])
    assert tracker.newest_first()[0].text == "T01.G1 power: 1,395 W of 1,400 W limit (100%)"


def test_a_rate_against_its_average_never_reads_zero_percent_lower():
    assert versus_text(1_000.0, 1_000.0) == "no change"
    assert versus_text(1_004.0, 1_000.0) == "no change"
    assert versus_text(700.0, 1_000.0) == "30% lower"
    assert versus_text(1_050.0, 1_000.0) == "5% higher"


def drift_alerts(
    scenario: str, seconds: int, seed: int = 7, fault_at: float = 30.0
) -> list[tuple[int, dict]]:
    """(seconds after start, event) of every tray_drift alert over `seconds` of the simulated rack."""
    clock = SimClock(T0_S)
    rack = SimRack(seed, scenario, clock, start=T0_S, fault_at=fault_at)
    source = SimRackFrames(rack)
    engine = AlertEngine(AlertRules(**{**OFF, "tray_drift": AlertRules().tray_drift}))
    out = []
    for t in range(1, seconds + 1):
        clock.advance(1.0)
        for event in engine.evaluate(source.poll(round(clock.now() * 1000))):
            out.append((t, event))
    return out


def test_tray_drift_warns_on_the_tray_whose_cooling_degrades_before_any_gpu_nears_slowdown():
    fault_at = 30.0
    alerts = drift_alerts("thermal", 90, fault_at=fault_at)
    clock = SimClock(T0_S)
    rack = SimRack(7, "thermal", clock, start=T0_S, fault_at=fault_at)
    tray = rack.scenario.fault.tray
    assert alerts, "no tray_drift alert"
    t, first = alerts[0]
    assert (first["kind"], first["source"]) == (EventKind.ALERT, f"T{tray:02d}")
    assert [e["source"] for _, e in alerts] == [f"T{tray:02d}"]  # no other tray
    # The simulator's own temperatures at that moment: every GPU still far from slowdown.
    clock.advance(float(t))
    rack.sync()
    assert min(g.margin_c for g in rack.gpus) >= 10
    assert fault_at < t < fault_at + 60


def test_tray_drift_stays_quiet_on_a_steady_rack_and_a_serviced_tray():
    assert drift_alerts("steady", 300) == []
    # The restarted tray cools while its servers are stopped and warms back with their work: its
    # power explains the warming, so it is no cooling fault (without the power test this fires).
    assert drift_alerts("restart", 240) == []
