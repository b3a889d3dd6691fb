"""The alert engine: hysteresis, minimum duration, every rule, recording through the poller; config tables."""

from __future__ import annotations

import pytest
from tui_frames import rack_frame

from collectors.alert_recorder import AlertRecorder
from collectors.alert_rules import AlertRule, AlertRules, Threshold
from collectors.alerts import AlertEngine
from collectors.config import ConfigError, parse_config
from collectors.poller import Poller
from monitor.view.alerts_view import AlertTracker
from storage.frame import Frame, batch_from_rows
from storage.head import Head
from storage.schemas import EndpointState, EventKind, GpuState

ONLY = {name: Threshold(on=0, off=0, enabled=False) for name in AlertRules.names()}


def rules(**enabled: Threshold) -> AlertRules:
    """Every rule off except the ones given."""
    return AlertRules(**{**ONLY, **enabled})


def kinds(events) -> list[tuple[str, int | None]]:
    return [(e["kind"], e.get("gpu")) for e in events]


def test_temperature_margin_fires_after_its_duration_and_clears_with_hysteresis():
    engine = AlertEngine(rules(temp_margin=Threshold(on=5, off=8, for_s=3)))
    margins = [10, 5, 4, 4, 4, 6, 7, 9, 4]  # past `on` from tick 1; fires at tick 4 (3 s later)
    fired = []
    for t, m in enumerate(margins):
        events = engine.evaluate(rack_frame(t, overrides={3: {"temp_margin_c": m}}, nvlink=False))
        fired.append([(e["kind"], e["gpu"]) for e in events if e["gpu"] == 3])
    assert fired[:4] == [[], [], [], []]
    assert fired[4] == [(EventKind.ALERT, 3)]
    assert fired[5] == [] and fired[6] == []  # 6 and 7 C sit between on and off: still alerting
    assert fired[7] == [(EventKind.ALERT_CLEARED, 3)]
    assert fired[8] == []  # past `on` again, but the minimum duration starts over


def test_a_blip_shorter_than_the_duration_never_fires():
    engine = AlertEngine(rules(power=Threshold(on=0.9, off=0.8, for_s=2)))
    out = []
    for t, power in enumerate([1_300_000, 1_300_000, 500_000, 1_300_000, 500_000]):
        out += engine.evaluate(rack_frame(t, overrides={0: {"power_mw": power}}, nvlink=False))
    assert [e for e in out if e["gpu"] == 0] == []


def test_links_down_and_climbing_link_errors_are_per_link():
    engine = AlertEngine(
        rules(links_down=Threshold(on=1, off=0), link_errors=Threshold(on=3, off=0, window_s=10))
    )
    out = []
    for t in range(6):
        link = {(5, 2): {"recovery": t * t}}  # grows in every sample from tick 1
        if t >= 5:
            link[(9, 17)] = {"state": 0}
        out.append(engine.evaluate(rack_frame(t, link_overrides=link)))
    climbing = [e for e in out[3] if e["code"] == AlertRule.LINK_ERRORS]
    assert [(e["kind"], e["gpu"], e["link"]) for e in climbing] == [(EventKind.ALERT, 5, 2)]
    assert "in 3 samples" in climbing[0]["detail"]
    down = [e for e in out[5] if e["code"] == AlertRule.LINKS_DOWN]
    assert [(e["kind"], e["gpu"], e["detail"]) for e in down] == [(EventKind.ALERT, 9, "links down: L17")]


def test_link_errors_clear_once_their_growth_leaves_the_window():
    """Errors that stop growing leave the window sample by sample, though the counters no longer move
    (a clean link's fast path must still expire them): samples at 1 s ticks 1-4, window 10 s, so the
    last leaves at tick 14 (by hand: 4 + 10) and the alert clears there."""
    engine = AlertEngine(rules(link_errors=Threshold(on=3, off=0, window_s=10)))
    seen = []
    for t in range(20):
        link = {(5, 2): {"recovery": min(t, 4) ** 2}}
        events = engine.evaluate(rack_frame(t, link_overrides=link))
        seen += [(t, e["kind"]) for e in events if e["code"] == AlertRule.LINK_ERRORS]
    assert seen == [(3, EventKind.ALERT), (14, EventKind.ALERT_CLEARED)]


def test_xids_fire_at_once_and_clear_after_their_window():
    engine = AlertEngine(rules(xid=Threshold(on=1, off=0, window_s=3)))
    xid = [{"kind": EventKind.XID, "gpu": 40, "code": 79}]
    first = engine.evaluate(rack_frame(0, events=xid, nvlink=False))
    assert kinds(first) == [(EventKind.ALERT, 40)]
    assert engine.evaluate(rack_frame(2, nvlink=False)) == []
    assert kinds(engine.evaluate(rack_frame(3, nvlink=False))) == [(EventKind.ALERT_CLEARED, 40)]


def serving_frame(t: int, tokens: int, state: EndpointState = EndpointState.OK) -> Frame:
    row = {
        "ts": 1000 * t,
        "endpoint": "vllm-00",
        "engine": "vllm",
        "state": int(state),
        "generation_tokens": tokens,
    }
    return Frame(1000 * t, {"serving": batch_from_rows("serving", [row])})


def test_tokens_drop_against_the_window_average_and_stale_endpoints():
    engine = AlertEngine(
        rules(tokens_drop=Threshold(on=0.3, off=0.1, window_s=60), stale=Threshold(on=1, off=0, for_s=2))
    )
    tokens, out = 0, []
    for t in range(80):
        tokens += 1000 if t < 60 else 300  # a 70 % drop from tick 60
        out += [(t, e["kind"], e["code"]) for e in engine.evaluate(serving_frame(t, tokens))]
    drop = [(t, k) for t, k, code in out if code == AlertRule.TOKENS_DROP]
    assert drop and drop[0][1] == EventKind.ALERT and 60 < drop[0][0] < 70
    stale = [engine.evaluate(serving_frame(80 + t, tokens, EndpointState.DOWN)) for t in range(4)]
    assert [len(s) for s in stale] == [0, 0, 1, 0]
    assert stale[2][0]["source"] == "vllm-00" and stale[2][0]["code"] == AlertRule.STALE


def test_a_silent_tray_raises_one_stale_alert():
    engine = AlertEngine(rules(stale=Threshold(on=1, off=0, for_s=0)))
    events = engine.evaluate(rack_frame(0, states={g: GpuState.STALE for g in (8, 9, 10, 11)}, nvlink=False))
    assert [(e["kind"], e["source"]) for e in events] == [(EventKind.ALERT, "tray 3")]


def test_the_recorder_puts_alerts_into_the_frames_the_poller_records():
    class Ticks:
        name = "rack"

        def __init__(self) -> None:
            self.t = 0

        def poll(self, ts_ms: int) -> Frame:
            self.t += 1
            return rack_frame(self.t, overrides={0: {"temp_margin_c": 2}}, nvlink=False)

        def close(self) -> None:
            pass

    recorder = AlertRecorder(rules(temp_margin=Threshold(on=5, off=8)))
    head = Head()
    poller = Poller([Ticks(), recorder], head, sinks=[recorder])
    try:
        first = poller.tick(1_000)
        second = poller.tick(2_000)
    finally:
        poller.stop()
    assert "events" not in first.batches  # found while tick 1 was recorded, so it travels with tick 2
    events = second.table("events").to_pylist()
    assert [(e["kind"], e["gpu"], e["code"]) for e in events] == [(EventKind.ALERT, 0, AlertRule.TEMP_MARGIN)]
    tracker = AlertTracker()
    assert tracker.update(head.frames()) == 1
    assert [a.text for a in tracker.newest_first()] == ["T01.G1 temp_margin: 2 C to slowdown (GPU at 28 C)"]


BASE = '[rack]\nname = "r"\n[[tray]]\nurl = "http://10.0.0.1:9401"\n'


def test_config_alert_and_key_tables():
    config = parse_config(
        BASE
        + '[alerts]\nbell = true\n[alerts.power]\non = 0.9\noff = 0.8\nfor = 5\n[keys]\nnvlink-view = "L"\n',
        "rack.toml",
    )
    assert config.alerts.bell and config.alerts.power == Threshold(on=0.9, off=0.8, for_s=5)
    assert config.alerts.temp_margin == AlertRules().temp_margin
    assert config.keys == (("nvlink-view", "L"),) and config.key_lines["nvlink-view"] == 12


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[alerts]\nbell = 1\n", "rack.toml:6: alerts.bell: must be true or false"),
        ("[alerts.power]\non = 0.8\noff = 0.9\n", "rack.toml:7: alerts.power.off: must be <= on (0.8)"),
        ("[alerts.temp_margin]\non = 8\noff = 5\n", "rack.toml:7: alerts.temp_margin.off: must be >= on (8)"),
        ("[alerts.fan]\non = 1\n", "rack.toml:5: alerts.fan: unknown rule"),
        ("[alerts.xid]\nwindow = -1\n", "rack.toml:6: alerts.xid.window: must be a number >= 0"),
        ("[alerts.xid]\nlevel = 1\n", "rack.toml:6: alerts.xid.level: unknown field"),
        ("[keys]\nquit = 3\n", 'rack.toml:6: keys.quit: must be a key name like "L"'),
        ('[keys]\nQuit = "x"\n', "rack.toml:6: keys.Quit: is not an action id"),
    ],
)
def test_config_errors_name_file_line_and_field(extra, message):
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + extra, "rack.toml")
    assert str(err.value).startswith(message)
