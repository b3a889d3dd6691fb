"""A rack's first rounds from a backend: trays and servers not heard from yet are awaited, not silent.

The quiet 4-rack bench_fleet run drew the fault rack red 10 times before its fault, for trays
VictoriaMetrics had not scraped yet. Figures here are hand-made (what the backend would answer).
"""

from __future__ import annotations

from collectors.config import parse_config
from collectors.promql_fleet import RackFigures
from monitor.view.fleet_row import Health, StartGrace, figures_row

TRAYS = "".join(
    f'[[tray]]\ntray = {t}\nhost = "tray{t:02d}"\nurl = "http://10.0.0.{t}:9401/metrics"\n'
    for t in range(1, 19)
)
SERVERS = '[[server]]\nname = "vllm-00"\nurl = "http://10.0.1.1:8000/metrics"\ngpus = [0]\n'
CONFIG = parse_config(f'[rack]\nname = "rack01"\ndown_after = 3\n{TRAYS}{SERVERS}')


def figures(ts: int, trays: range, server: bool) -> RackFigures:
    """A round where `trays` answered with four GPUs each (and the server, if `server`)."""
    return RackFigures(
        ts_ms=ts,
        gpus_seen={f"tray{t:02d}": 4 for t in trays},
        servers_fresh={"vllm-00"} if server else set(),
    )


def row_at(grace: StartGrace, got: RackFigures) -> tuple[Health, str]:
    row = figures_row(got, CONFIG, 72, grace.awaited(got, CONFIG))
    return row.health, "" if row.worst is None else f"{row.worst.what} {row.worst.place}"


def test_trays_not_heard_yet_wait_for_down_after_rounds_then_are_silent() -> None:
    grace = StartGrace(CONFIG.down_after)
    assert row_at(grace, figures(1, range(0), False)) == (Health.WAITING, "")  # nothing scraped yet
    assert row_at(grace, figures(2, range(2, 19), False)) == (Health.OK, "")  # T01 and the server awaited
    assert row_at(grace, figures(3, range(2, 19), True)) == (Health.OK, "")
    # Round 4: past down_after rounds, a tray never heard from is silent.
    assert row_at(grace, figures(4, range(2, 19), True)) == (Health.CRITICAL, "not answering tray T01")


def test_a_tray_heard_once_then_silent_is_not_answering_at_once() -> None:
    grace = StartGrace(CONFIG.down_after)
    assert row_at(grace, figures(1, range(1, 19), True)) == (Health.OK, "")
    assert row_at(grace, figures(2, range(2, 19), True)) == (Health.CRITICAL, "not answering tray T01")


def test_a_server_heard_once_then_silent_is_not_answering_at_once() -> None:
    grace = StartGrace(CONFIG.down_after)
    assert row_at(grace, figures(1, range(1, 19), True)) == (Health.OK, "")
    assert row_at(grace, figures(2, range(1, 19), False)) == (
        Health.WARNING,
        "not answering vllm-00 on T01.G1",
    )
