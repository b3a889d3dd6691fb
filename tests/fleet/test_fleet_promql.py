"""Fleet rows from aggregate PromQL queries equal the rows the rack view's builders make, on both backends.

Two simulated racks (one loses a GPU mid-run) are scraped over HTTP by a ScrapeSource; each tick's frame
goes through the fleet's full path (monitor.fleet.FleetRack: the rack view's SnapshotBuilder, ServingBuilder,
problems), which gives the expected row. The very pages go into Prometheus and VictoriaMetrics with the
scrape's labels and timestamps (tests/promql/backends.py), and collectors.promql_fleet reads every rack's
figures at each tick by its aggregate queries; monitor.view.fleet_row.figures_row turns them into rows.
The figures must match the full path's: GPUs ok, power and tokens/s with their coverage, the hottest GPU,
links down, servers not serving, the row's colour and its worst problem. The query count per tick is the
same for 2 racks as the module says for any number (QUERIES).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from collectors.clock import SimClock
from collectors.config import RackConfig
from collectors.config_promql import PromqlConfig
from collectors.promql_fleet import FleetPlan, FleetQueries
from collectors.sim.http import SimServers
from collectors.sim.rack import SimRack
from monitor.fleet import FleetRack, RackHead
from monitor.view.fleet_row import FleetRow, Health, figures_row
from tests.promql.backends import RecordingScrape, needs_backends, openmetrics, prometheus, victoria

pytestmark = needs_backends

TICKS = 16
FIRST = 11
"""Rows are compared from the 11th tick on: the 10 s tokens/s window is full there on both sides."""
SLOW_S = 120.0


@dataclasses.dataclass
class Recorded:
    configs: list[RackConfig]
    ticks: list[int]
    om_text: str
    expected: dict[str, list[FleetRow]]
    lost: tuple[str, int]


def _record(
    name: str, rack: SimRack, clock: SimClock, pages_out: list[str]
) -> tuple[RackConfig, list[FleetRow]]:
    """Scrape `rack` for TICKS ticks; (its config, the full path's row at each tick)."""
    with SimServers(rack, name=name) as servers:
        config = servers.config
        assert config is not None
        config = dataclasses.replace(config, name=name)
        scrape = RecordingScrape(config.trays, config.servers, name=name, timeout_s=SLOW_S)
        full = FleetRack(config, RackHead(), None)  # type: ignore[arg-type]
        pages, rows = [], []
        try:
            for _ in range(TICKS):
                clock.advance(1)
                ts = round(clock.now() * 1000)
                scrape.pages = {}
                full.head.append(scrape.poll(ts))
                assert len(scrape.pages) == len(config.trays) + len(config.servers)
                pages.append((ts, scrape.pages))
                rows.append(full.current_row())
        finally:
            scrape.close()
    kinds = {t.url: "tray" for t in config.trays} | {s.url: "server" for s in config.servers}
    text = openmetrics(pages, name, kinds).removesuffix("# EOF\n")
    for server in config.servers:  # a relabelled `server` label too, as where servers share a port
        hp = urlsplit(server.url).netloc
        text = text.replace(f'instance="{hp}"', f'instance="{hp}",server="{server.name}"')
    pages_out.append(text)
    return config, rows


@pytest.fixture(scope="module")
def recorded() -> Iterator[Recorded]:
    start = (int(time.time()) // 3600) * 3600 - 3 * 3600  # in the past: both backends take it as history
    om: list[str] = []
    configs, expected = [], {}
    lost = None
    for name, seed, scenario in (("ra", 3, "gpu-lost"), ("rb", 4, "steady")):
        clock = SimClock(start)
        rack = SimRack(seed=seed, clock=clock, scenario=scenario, fault_at=12, tp=4)
        config, rows = _record(name, rack, clock, om)
        configs.append(config)
        expected[name] = rows
        if scenario == "gpu-lost":
            assert rack.scenario.fault is not None and rack.scenario.fault.gpu is not None
            lost = (name, rack.scenario.fault.gpu)
    ticks = [round((start + t) * 1000) for t in range(1, TICKS + 1)]
    assert lost is not None
    yield Recorded(configs, ticks, "".join(om) + "# EOF\n", expected, lost)


def _rows(
    url: str, recorded: Recorded, server_label: str = "instance"
) -> tuple[dict[str, list[FleetRow]], list[int]]:
    configs = [
        dataclasses.replace(
            c, promql=PromqlConfig(url, (("rack", c.name),), lookback_s=3.0, server_label=server_label)
        )
        for c in recorded.configs
    ]
    plan = FleetPlan.of(configs)
    queries = FleetQueries(plan, timeout_s=SLOW_S)
    out: dict[str, list[FleetRow]] = {c.name: [] for c in configs}
    counts = []
    for ts in recorded.ticks[FIRST - 1 :]:
        figures = queries.poll(ts)
        counts.append(queries.last_cost.queries)
        for c in configs:
            assert not figures[c.name].error, figures[c.name].error
            out[c.name].append(figures_row(figures[c.name], c, 72))
    return out, counts


def _close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=rel))


def _check(recorded: Recorded, got: dict[str, list[FleetRow]]) -> None:
    for name, rows in got.items():
        for want, row in zip(recorded.expected[name][FIRST - 1 :], rows, strict=True):
            at = f"{name} at {row.ts_ms}"
            assert row.ts_ms == want.ts_ms, at
            assert (row.gpus_ok, row.gpus) == (want.gpus_ok, want.gpus), at
            assert (row.power_kw.covered, row.power_kw.of) == (want.power_kw.covered, want.power_kw.of), at
            assert _close(row.power_kw.value, want.power_kw.value), (at, row.power_kw, want.power_kw)
            assert (row.tokens.covered, row.tokens.of) == (want.tokens.covered, want.tokens.of), at
            assert _close(row.tokens.value, want.tokens.value), (at, row.tokens, want.tokens)
            assert (row.hottest_c, row.hottest_at) == (want.hottest_c, want.hottest_at), at
            assert row.links_down == want.links_down, at
            assert (row.endpoints_down, row.endpoints) == (want.endpoints_down, want.endpoints), at
            assert row.health == want.health, (at, row.worst, want.worst)
            if want.worst is not None and want.worst.rank <= 4:  # the ranks that turn a row red
                assert row.worst is not None and (row.worst.rank, row.worst.place) == (
                    want.worst.rank,
                    want.worst.place,
                ), (at, row.worst, want.worst)


def _fault_seen(recorded: Recorded, got: dict[str, list[FleetRow]]) -> None:
    """The lost GPU's rack goes red naming it, by the sim's own ground truth (not only by the full path)."""
    from collectors.rack import gpu_label

    name, gpu = recorded.lost
    assert got[name][-1].health is Health.CRITICAL
    assert got[name][-1].worst is not None and got[name][-1].worst.place == gpu_label(gpu)
    other = next(n for n in got if n != name)
    assert got[other][-1].health is not Health.CRITICAL


def test_victoria_metrics_rows_equal_the_full_path(recorded: Recorded, tmp_path: Path) -> None:
    with victoria(recorded.om_text, tmp_path) as url:
        got, counts = _rows(url, recorded)
        by_name, _ = _rows(url, recorded, server_label="server")  # servers known by name, not host:port
    _check(recorded, got)
    _fault_seen(recorded, got)
    _check(recorded, by_name)
    assert counts[0] == 11 and set(counts[1:]) == {10}  # 10 a tick (+ the placement query on the first)


def test_prometheus_rows_equal_the_full_path(recorded: Recorded, tmp_path: Path) -> None:
    with prometheus(recorded.om_text, tmp_path) as url:
        got, _ = _rows(url, recorded)
    _check(recorded, got)
    _fault_seen(recorded, got)


async def test_fleet_screen_over_aggregate_queries(recorded: Recorded, tmp_path: Path) -> None:
    """`monitor --config fleet.toml` on racks that read one backend: rows from the queries, the lost GPU's
    rack red and first, its alerts column '-' (not evaluated), enter opens the rack's own PromQL source."""
    from collectors.rack import gpu_label
    from monitor.commands.root import scrape_source
    from monitor.fleet import QueriedFleet, make_fleet
    from monitor.tui.fleet_app import FleetApp
    from monitor.tui.screens.fleet import FleetScreen
    from tests.pilot_wait import until
    from tests.tui.screen_text import screen_lines

    with victoria(recorded.om_text, tmp_path) as url:
        configs = [
            dataclasses.replace(c, promql=PromqlConfig(url, (("rack", c.name),), lookback_s=3.0))
            for c in recorded.configs
        ]
        fleet = make_fleet(configs, lambda c, every: [scrape_source(c, every)])
        assert isinstance(fleet, QueriedFleet)
        # The recorded data is hours old: its last tick is polled once (off the loop, as the thread does).
        await asyncio.to_thread(fleet.poll, recorded.ticks[-1])
        name, gpu = recorded.lost
        app = FleetApp(fleet, fleet_name="fleet", title="fleet")
        try:
            async with app.run_test(size=(160, 40)) as pilot:
                await until(pilot, lambda: app.rows_applied > 0, "the first rows")
                top = screen_lines(app)[2].strip()
                assert top.startswith(name) and "CRIT" in top and gpu_label(gpu) in top
                cells = app.fleet_screen.query_one("#fleet-table").get_row(name)
                assert str(cells[8]) == "-", top  # the alerts column: not evaluated by aggregates
                await pilot.press("enter")
                await until(pilot, lambda: app.open_rack_name == name and app.frames_applied > 0, "rack open")
                assert not isinstance(app.screen, FleetScreen)
                await pilot.press("escape")
                await until(pilot, lambda: isinstance(app.screen, FleetScreen), "back on the fleet")
        finally:
            fleet.stop()
