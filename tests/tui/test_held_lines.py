"""Figures that hold through noise on the serving table, and a key line that keeps help on 80 columns."""

from __future__ import annotations

import dataclasses

from textual.binding import Binding

from monitor.tui.app import RackApp
from monitor.tui.widgets.key_line import key_line_text
from monitor.tui.widgets.serving_panel import HeldServing, instance_line
from monitor.view.serving import InstanceView, ServingSnapshot

SERVER = InstanceView(
    "vllm-07", "vllm", "llama", "28", "ok", tokens_per_s=15_100.0, running=360, waiting=0, kv_cache=0.21,
    ttft_p50_s=0.18, ttft_p99_s=0.45, itl_p50_s=0.022,
)  # fmt: skip


def shown(held: HeldServing, **changes: object) -> str:
    snapshot = ServingSnapshot(ts_ms=1, instances=(dataclasses.replace(SERVER, **changes),))
    return instance_line(held.hold(snapshot).instances[0]).plain


def test_a_server_line_holds_through_jitter_and_follows_a_real_change():
    held = HeldServing()
    first = shown(held)
    # a tick's jitter: 1 % fewer tokens, a few more running, one request waiting, p99 up 10 ms
    assert shown(held, tokens_per_s=14_950.0, running=366, waiting=1, ttft_p99_s=0.46) == first
    # the server slows by a third and its queue grows: the line says so
    slow = shown(held, tokens_per_s=9_800.0, waiting=40)
    assert "9.8k" in slow and " 40 " in slow
    # a server that stops answering is shown as it is, and comes back with fresh figures
    assert "DOWN" in shown(held, state="down", age_s=3.0)
    assert "14.9k" in shown(held, tokens_per_s=14_930.0)


def test_the_key_line_drops_the_metric_names_before_help_on_80_columns():
    bindings = [b for b in RackApp.BINDINGS if isinstance(b, Binding)]
    display = {b.key: b.key for b in bindings}
    full = key_line_text(bindings, {"metric('util')"}, display).plain
    assert "d deviation" in full and "n nvlink" in full and len(full) > 78
    compact = key_line_text(bindings, {"metric('util')", "toggle_deviation"}, display, width=78)
    assert compact.plain.startswith("u util p t m c n e d deviation ")
    assert "question_mark help" in compact.plain[:78]
