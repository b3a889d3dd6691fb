"""A PARTIAL serving row (some engine's series NaN or missing) answered: no "not answering" alert, and
its tokens stay watched by the tokens-drop rule. Frames built by hand."""

from __future__ import annotations

from collectors.alert_rules import AlertRule, AlertRules, Threshold
from collectors.alerts import AlertEngine
from storage.frame import Frame, batch_from_rows
from storage.schemas import EndpointState, EventKind

OFF = {name: Threshold(on=0, off=0, enabled=False) for name in AlertRules.names()}
RULES = AlertRules(
    **{
        **OFF,
        "stale": Threshold(on=1, off=0, for_s=0),
        "tokens_drop": Threshold(on=0.3, off=0.1, window_s=60),
    }
)


def serving_frame(t: int, tokens: int, state: EndpointState) -> Frame:
    row = {
        "ts": 1000 * t,
        "endpoint": "vllm-00",
        "engine": "vllm",
        "gpus": "0,1",
        "state": int(state),
        "generation_tokens": tokens,
    }
    return Frame(1000 * t, {"serving": batch_from_rows("serving", [row])})


def play(states: list[EndpointState], rates: list[int]) -> list[tuple[int, str, int]]:
    """(tick, kind, rule code) of every alert event over ticks with these states and tokens/s."""
    engine, tokens, out = AlertEngine(RULES), 0, []
    for t, (state, per_s) in enumerate(zip(states, rates, strict=True)):
        tokens += per_s
        out += [(t, e["kind"], e["code"]) for e in engine.evaluate(serving_frame(t, tokens, state))]
    return out


def test_a_partial_row_is_an_answer_not_a_silent_server():
    states = [EndpointState.OK] * 5 + [EndpointState.PARTIAL] * 20 + [EndpointState.DOWN]
    events = play(states, [1000] * len(states))
    # Only the DOWN tick raises the stale alert (the rule is live); the 20 partial ticks raise nothing.
    assert events == [(25, EventKind.ALERT, AlertRule.STALE)]


def test_a_partial_rows_tokens_are_watched_by_the_tokens_drop_rule():
    # 60 s at 1000 tok/s, then partial rows (one engine's series NaN) while throughput falls 70 %.
    states = [EndpointState.OK] * 60 + [EndpointState.PARTIAL] * 20
    rates = [1000] * 60 + [300] * 20
    drops = [(t, kind) for t, kind, code in play(states, rates) if code == AlertRule.TOKENS_DROP]
    assert drops and drops[0][1] == EventKind.ALERT and 60 < drops[0][0] < 70, drops
    assert [t for t, kind, code in play(states, rates) if code == AlertRule.STALE] == []
