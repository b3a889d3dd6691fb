"""One fleet-screen row per rack, made from the rack view's own figures, and the orders the screen sorts by.

A row is a summary of what the rack view would show for the same frames: GPUs ok, power and tokens/s
(storage.rack_total's RackTotal, with what they cover, from monitor.view.builder / monitor.view.totals),
the hottest GPU (from the snapshot's cells), links down (the snapshot's link trouble), endpoints down
(monitor.view.problems' counts) and the open alerts (monitor.view.alerts_view). Nothing is computed a
second way here: the row only picks figures out. No UI toolkit here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from collectors.config import RackConfig
from collectors.promql_fleet import RackFigures, tray_finder
from collectors.rack import COMPUTE_TRAYS, gpu_label, gpu_place
from monitor.view.alerts_view import ActiveAlert
from monitor.view.model import XID_NAMES, CellState, RackSnapshot
from monitor.view.problems import Problem, RackProblems, Rank
from storage.rack_total import RackTotal


class Health(IntEnum):
    """A row's colour, worst first: the fleet screen's default order."""

    CRITICAL = 0
    WARNING = 1
    WAITING = 2
    OK = 3


CRITICAL_RANKS = frozenset({Rank.GPU_LOST, Rank.SILENT, Rank.LINK_DOWN, Rank.ERRORS, Rank.XID})
"""Problems that turn a rack's row red: a GPU or a whole tray gone, a link down or erring, an XID.
Everything else the problems panel lists (thermal, power, stragglers, endpoints, the collector) and any
open alert turns it yellow."""


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One rack on the fleet screen.

    Attributes:
        name: the rack's name (its config's [rack] name).
        ts_ms: the newest frame's time (None before the first).
        gpus_ok / gpus: GPUs reading OK, of the GPUs the rack has.
        power_kw: rack power with what it covers (GPUs).
        tokens: rack generated tokens/s with what it covers (serving series).
        hottest_c / hottest_at: the hottest GPU's temperature and label (None without readings).
        links_down: NVLinks the newest rows report inactive.
        endpoints_down / endpoints: inference servers not serving, of those the rack has.
        alerts: alerts open now.
        worst: the most severe problem (None when there is none).
        problems: how many problems the rack has.
        partial: the row came from the fleet's aggregate queries (figures_row): no alert engine ran.
        error: why the row has no figures (the backend's answer failed), else ''.
    """

    name: str
    ts_ms: int | None
    gpus_ok: int
    gpus: int
    power_kw: RackTotal
    tokens: RackTotal
    hottest_c: float | None
    hottest_at: str
    links_down: int
    endpoints_down: int
    endpoints: int
    alerts: int
    worst: Problem | None
    problems: int
    partial: bool = False
    error: str = ""

    @property
    def health(self) -> Health:
        """Red for a critical problem, yellow for another problem or an open alert, else ok (or waiting)."""
        if self.ts_ms is None:
            return Health.WAITING
        if self.worst is not None and self.worst.rank in CRITICAL_RANKS:
            return Health.CRITICAL
        if self.worst is not None or self.alerts:
            return Health.WARNING
        return Health.OK

    @classmethod
    def waiting(cls, name: str, gpus: int, *, error: str = "") -> FleetRow:
        """The row of a rack no frame has arrived from yet (or whose figures could not be read: `error`)."""
        none = RackTotal(None, 0, gpus)
        return cls(
            name, None, 0, gpus, none, RackTotal(None, 0, 0), None, "", 0, 0, 0, 0, None, 0, error=error
        )


def fleet_row(
    name: str, snapshot: RackSnapshot, problems: RackProblems, alerts: Sequence[ActiveAlert]
) -> FleetRow:
    """The row of rack `name` from its snapshot, its problems (monitor.view.problems) and open alerts."""
    totals = snapshot.totals
    hottest_c: float | None = None
    hottest_at = ""
    for g in snapshot.gpus:
        temp = g.values.get("temp") if g.state is CellState.OK else None
        if temp is not None and (hottest_c is None or temp > hottest_c):
            hottest_c, hottest_at = temp, g.label
    return FleetRow(
        name=name,
        ts_ms=snapshot.ts_ms,
        gpus_ok=problems.gpus_ok,
        gpus=problems.gpus,
        power_kw=totals.power,
        tokens=totals.tokens,
        hottest_c=hottest_c,
        hottest_at=hottest_at,
        links_down=sum(1 for link in snapshot.links if link.down),
        endpoints_down=problems.endpoints - problems.endpoints_ok,
        endpoints=problems.endpoints,
        alerts=len(alerts),
        worst=problems.problems[0] if problems.problems else None,
        problems=len(problems.problems),
    )


@dataclass
class StartGrace:
    """Which of a rack's trays and servers are still awaited: never heard from, in the first rounds.

    A backend's first scrapes of a rack land over a few seconds (VictoriaMetrics and Prometheus spread
    their targets over the scrape interval), so a tray not heard from yet is awaited, not 'not
    answering', for the first `rounds` rounds (the rack's down_after, as the rack view's poller
    counts misses); one that never answers is 'not answering' after that. One heard from once and
    silent later is 'not answering' at once, as the rack view's stale rows say.
    """

    rounds: int
    heard: set[str] = field(default_factory=set)
    done: int = 0

    def awaited(self, figures: RackFigures, config: RackConfig) -> frozenset[str]:
        """The places (`tray T01`, server names) awaited at this round of `figures`."""
        self.done += 1
        if figures.error:
            return frozenset()
        tray_of = tray_finder(config)
        trays = (tray_of(host) for host, n in figures.gpus_seen.items() if n)
        self.heard.update(f"tray T{tray:02d}" for tray in trays if tray is not None)
        self.heard.update(figures.servers_fresh)
        if self.done > self.rounds:
            return frozenset()
        expected = {f"tray T{t:02d}" for t in range(1, COMPUTE_TRAYS + 1)} | {s.name for s in config.servers}
        return frozenset(expected - self.heard)


def figures_row(
    figures: RackFigures, config: RackConfig, gpus: int, awaited: frozenset[str] = frozenset()
) -> FleetRow:
    """The row of a rack from the fleet's aggregate queries (collectors.promql_fleet.RackFigures).

    The same figures as fleet_row's, by the same rules, computed by the backend; what is wrong is what
    those figures show (lost, silent or erring GPUs, links down, XIDs in the window, servers not
    serving): `partial` says that the alert engine's alerts and the slowdowns, stragglers and stalls
    that need a rack's history are not in it (the rack view, opened, has them). Trays and servers in
    `awaited` (StartGrace) are not reported silent yet; a rack with every tray awaited is waiting.
    """
    if figures.error:
        return FleetRow.waiting(config.name, gpus, error=figures.error)
    if all(f"tray T{t:02d}" in awaited for t in range(1, COMPUTE_TRAYS + 1)):
        return FleetRow.waiting(config.name, gpus)
    problems = [p for p in _figure_problems(figures, config) if not _is_awaited(p, awaited)]
    fresh = sum(figures.gpus_seen.values())
    lost = {g for g, state in figures.not_ok.items() if state == 1}
    serving = [s for s in config.servers if s.name in figures.servers_fresh and not lost & set(s.gpus)]
    return FleetRow(
        name=config.name,
        ts_ms=figures.ts_ms,
        gpus_ok=fresh - len(figures.not_ok),
        gpus=gpus,
        power_kw=RackTotal(None if figures.power_w is None else figures.power_w / 1e3, figures.power_n, gpus),
        tokens=RackTotal(figures.tokens, figures.tokens_n, len(config.servers)),
        hottest_c=figures.hottest_c,
        hottest_at=gpu_label(figures.hottest[0]) if figures.hottest else "",
        links_down=len(figures.links_down),
        endpoints_down=len(config.servers) - len(serving),
        endpoints=len(config.servers),
        alerts=0,
        worst=problems[0] if problems else None,
        problems=len(problems),
        partial=True,
    )


def _is_awaited(problem: Problem, awaited: frozenset[str]) -> bool:
    """A silent tray or server still in its start grace."""
    if problem.what != "not answering":
        return False
    return problem.place in awaited or (problem.endpoint is not None and problem.endpoint in awaited)


def _figure_problems(figures: RackFigures, config: RackConfig) -> list[Problem]:
    """What the figures show wrong, in monitor.view.problems' order (rank, GPU, place)."""
    found: list[Problem] = []
    trays = {gpu_place(g)[0] for g in range(72)}
    tray_of = tray_finder(config)
    seen_trays = {tray_of(h) for h, n in figures.gpus_seen.items() if n}
    for tray in sorted(trays - seen_trays):
        found.append(
            Problem(Rank.SILENT, "not answering", f"tray T{tray:02d}", "no reading", gpu=(tray - 1) * 4)
        )
    for gpu, state in figures.not_ok.items():
        what = {1: "GPU lost", 2: "not answering"}.get(state, "GPU error")
        rank = Rank.SILENT if state == 2 else Rank.GPU_LOST
        found.append(Problem(rank, what, gpu_label(gpu), gpu=gpu))
    for gpu, link in figures.links_down:
        found.append(
            Problem(Rank.LINK_DOWN, "down", f"{gpu_label(gpu)} link {link}", "", "nvlink", gpu, link)
        )
    for gpu, code in figures.xids.items():
        found.append(Problem(Rank.XID, f"XID {code}", gpu_label(gpu), XID_NAMES.get(code, ""), gpu=gpu))
    lost = {g for g, state in figures.not_ok.items() if state == 1}
    for server in config.servers:
        on = [gpu_label(g) for g in server.gpus]
        place = f"{server.name} on {on[0]}..{on[-1]}" if len(on) > 1 else f"{server.name} on {''.join(on)}"
        place = place if on else server.name
        gpu = server.gpus[0] if len(server.gpus) == 1 else None
        if server.name not in figures.servers_fresh:
            found.append(
                Problem(Rank.ENDPOINT, "not answering", place, "", "serving", gpu, endpoint=server.name)
            )
        elif lost & set(server.gpus):
            found.append(Problem(Rank.ENDPOINT, "gpu lost", place, "", "serving", gpu, endpoint=server.name))
    found.sort(key=lambda p: (p.rank, p.gpu if p.gpu is not None else 999, p.place))
    return found


def _worst_key(row: FleetRow) -> tuple[float, ...]:
    rank = row.worst.rank if row.worst is not None else len(Rank)
    return (row.health, rank, -row.problems, -row.alerts)


def _missing_last(value: float | None) -> float:
    """Descending sort key with a missing figure after every real one."""
    return float("inf") if value is None else -value


SORTS: dict[str, Callable[[FleetRow], tuple[float | str, ...]]] = {
    "worst": lambda r: (*_worst_key(r), r.name),
    "name": lambda r: (r.name,),
    "power": lambda r: (_missing_last(r.power_kw.value), r.name),
    "tokens/s": lambda r: (_missing_last(r.tokens.value), r.name),
    "hottest": lambda r: (_missing_last(r.hottest_c), r.name),
}
"""The fleet screen's orders, by name, in the order its sort key cycles them; 'worst' comes first."""


def sorted_rows(rows: Sequence[FleetRow], order: str) -> list[FleetRow]:
    """`rows` in order `order` (a key of SORTS)."""
    return sorted(rows, key=SORTS[order])  # type: ignore[arg-type]
