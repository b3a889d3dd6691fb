"""What is wrong now, most severe first, each with its place in the rack and the view that shows it.

Built from what the rack view already holds: the snapshot (GPU states, clock-event reasons, margins,
links down or climbing, events), the serving snapshot (servers that do not serve), the group skew
(stragglers) and the active alerts (what only the alert engine knows over time: a tray drifting warm,
a server's tokens/s falling, memory errors, a stopped recording). The snapshot's facts show at the
tick they appear; alerts add what the snapshot cannot tell. One GPU's problems are folded into one
line under its most severe one, so a lost GPU is one line, not five. No UI toolkit here.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum

from collectors.alert_rules import AlertRule, AlertRules
from collectors.rack import LINKS_PER_GPU
from monitor.view.alerts_view import ActiveAlert
from monitor.view.model import XID_NAMES, CellState, GpuView, RackSnapshot
from monitor.view.nvlink import CLIMBING_SAMPLES
from monitor.view.serving import ANSWERED_NAMES, ServingSnapshot, parse_gpus
from monitor.view.skew import group_skew
from storage.schemas import EventKind

THERMAL_REASONS = frozenset({"sw-thermal", "hw-thermal"})
"""Clock-event reasons that mean the GPU trades clocks for temperature."""
POWER_REASONS = frozenset({"hw-slowdown", "power-brake"})
"""Reasons that mean something outside the GPU's own power budget holds it back (a brake, a PSU)."""
MIN_GROUP = 3
"""group_skew names no straggler in a smaller group (with two GPUs there is no telling which is off)."""
LATE_WINDOW_INTERVALS = 3
"""A collector-late event counts as a problem for this many intervals."""


class Rank(IntEnum):
    """Severity, most severe first: the order the panel lists problems in."""

    GPU_LOST = 0
    SILENT = 1
    LINK_DOWN = 2
    ERRORS = 3
    XID = 4
    THERMAL = 5
    POWER = 6
    STRAGGLER = 7
    ENDPOINT = 8
    COLLECTOR = 9


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong, where it is, and what opens it.

    Attributes:
        rank: its severity.
        what: what is wrong, in a few words ('GPU lost', 'link down').
        place: where: 'T18.G3', 'T13.G4 link 7', 'vllm-70 on T18.G3', 'tray T05'.
        detail: the figures behind it.
        view: the view that shows it: 'detail' (a GPU), 'nvlink' (a link), 'serving' (a server),
            'events' (the collector).
        gpu / link / endpoint: the element, where one applies (gpu also for a server on one GPU).
    """

    rank: Rank
    what: str
    place: str
    detail: str = ""
    view: str = "detail"
    gpu: int | None = None
    link: int | None = None
    endpoint: str | None = None

    @property
    def text(self) -> str:
        """'T13.G4 link 7 down: error counters +3,120 in 45 samples'."""
        return f"{self.place} {self.what}: {self.detail}".rstrip(": ")


@dataclass(frozen=True, slots=True)
class RackProblems:
    """The problems at one moment, most severe first, and what the rack has that works."""

    problems: tuple[Problem, ...]
    gpus_ok: int
    gpus: int
    links_up: int
    links: int
    endpoints_ok: int
    endpoints: int
    ts_ms: int | None = None

    @property
    def healthy(self) -> bool:
        """Nothing wrong (and data to tell)."""
        return not self.problems and self.ts_ms is not None

    @property
    def counts(self) -> str:
        """'71/72 GPUs, 1295/1296 links, 72/72 endpoints' (endpoints left out without any)."""
        parts = [f"{self.gpus_ok}/{self.gpus} GPUs", f"{self.links_up}/{self.links} links"]
        if self.endpoints:
            parts.append(f"{self.endpoints_ok}/{self.endpoints} endpoints")
        return ", ".join(parts)

    @property
    def summary(self) -> str:
        """'no problems: 72/72 GPUs, ...', '3 problems: 71/72 GPUs, ...', or 'waiting for data'."""
        if self.ts_ms is None:
            return "waiting for data"
        n = len(self.problems)
        head = "no problems" if not n else f"{n} problem{'s' if n != 1 else ''}"
        return f"{head}: {self.counts}"


def rack_problems(
    snapshot: RackSnapshot,
    serving: ServingSnapshot | None = None,
    alerts: Sequence[ActiveAlert] = (),
    rules: AlertRules | None = None,
) -> RackProblems:
    """Everything wrong at the snapshot's moment, most severe first (ties: rack order)."""
    rules = rules or AlertRules()
    found: list[Problem] = []
    found += _gpu_problems(snapshot, rules)
    found += _link_problems(snapshot)
    found += _xid_problems(snapshot, rules)
    found += _straggler_problems(snapshot, serving)
    found += _endpoint_problems(snapshot, serving)
    found += _collector_problems(snapshot)
    found += _alert_problems(snapshot, serving, alerts, found)
    held = snapshot.layout.gpus
    serves = [i for i in serving.instances if i.state in ANSWERED_NAMES and not i.fault] if serving else []
    return RackProblems(
        problems=_folded(found),
        gpus_ok=sum(snapshot.gpu(g).state is CellState.OK for g in held),
        gpus=len(held),
        links_up=sum(s.links_up or 0 for s in snapshot.switches),
        links=len(held) * LINKS_PER_GPU,
        endpoints_ok=len(serves),
        endpoints=len(serving.instances) if serving else 0,
        ts_ms=snapshot.ts_ms,
    )


def _folded(found: Iterable[Problem]) -> tuple[Problem, ...]:
    """Most severe first; a GPU's further problems join its first line; exact repeats go."""
    out: list[Problem] = []
    by_gpu: dict[int, int] = {}
    seen: set[tuple[Rank, str]] = set()
    for p in sorted(found, key=lambda p: (p.rank, p.gpu if p.gpu is not None else 999, p.place)):
        if (p.rank, p.place) in seen:
            continue
        seen.add((p.rank, p.place))
        # A tray's line keeps its own place; only a GPU's own lines fold into one.
        whole_gpu = p.gpu is not None and p.link is None and p.endpoint is None and p.view == "detail"
        whole_gpu = whole_gpu and not p.place.startswith("tray ")
        if whole_gpu and p.gpu in by_gpu:
            first = out[by_gpu[p.gpu]]
            extra = f"{p.what} {p.detail}".strip() if p.what not in first.detail else ""
            if extra and extra not in first.detail:
                out[by_gpu[p.gpu]] = replace(first, detail=f"{first.detail}; {extra}".lstrip("; "))
            continue
        if whole_gpu:
            by_gpu[p.gpu] = len(out)  # type: ignore[index]
        out.append(p)
    return tuple(out)


def gpus_place(snapshot: RackSnapshot, gpus: Sequence[int]) -> str:
    """'T18.G3', or 'T01.G1..T01.G4' for a server on several GPUs ('' for none)."""
    labels = [snapshot.gpu(g).label for g in gpus if 0 <= g < len(snapshot.gpus)]
    if len(labels) <= 1:
        return "".join(labels)
    return f"{labels[0]}..{labels[-1]}"


def _gpu_problems(snapshot: RackSnapshot, rules: AlertRules) -> Iterable[Problem]:
    """Lost, silent and erroring GPUs (a whole silent tray as one line), then slowdowns."""
    if snapshot.ts_ms is None:
        return
    layout = snapshot.layout
    silent = (CellState.STALE, CellState.NO_DATA)
    for row in layout.rows:
        members = [snapshot.gpu(g) for g in row.gpus if g is not None]
        if row.tray is not None and len(members) > 1 and all(g.state in silent for g in members):
            place = f"tray T{row.tray:02d}"
            yield Problem(Rank.SILENT, "not answering", place, _age(members), gpu=members[0].index)
            continue
        for g in members:
            yield from _one_gpu(g, rules)


def _one_gpu(g: GpuView, rules: AlertRules) -> Iterable[Problem]:
    if g.state is CellState.LOST:
        yield Problem(Rank.GPU_LOST, "GPU lost", g.label, gpu=g.index)
    elif g.state is CellState.ERROR:
        yield Problem(Rank.GPU_LOST, "GPU error", g.label, "the driver reports an error", gpu=g.index)
    elif g.state in (CellState.STALE, CellState.NO_DATA):
        yield Problem(Rank.SILENT, "not answering", g.label, _age([g]), gpu=g.index)
    if g.state is not CellState.OK:
        return
    reasons = set(g.clock_reasons)
    margin = g.row.get("temp_margin_c")
    if reasons & THERMAL_REASONS or (margin is not None and margin <= rules.temp_margin.on):
        yield Problem(Rank.THERMAL, "thermal slowdown", g.label, _slowdown_detail(g), gpu=g.index)
    elif reasons & POWER_REASONS:
        yield Problem(Rank.POWER, "power slowdown", g.label, _slowdown_detail(g), gpu=g.index)


def _slowdown_detail(g: GpuView) -> str:
    """'sw-thermal, 3 C to slowdown, 86 C, 1,410 MHz': the reasons and the readings of the cell's sample."""
    parts = [", ".join(r for r in g.clock_reasons if r != "idle")]
    if g.row.get("temp_margin_c") is not None:
        parts.append(f"{g.row['temp_margin_c']} C to slowdown")
    if g.row.get("temp_gpu_c") is not None:
        parts.append(f"{g.row['temp_gpu_c']} C")
    if g.row.get("sm_clock_mhz") is not None:
        parts.append(f"{g.row['sm_clock_mhz']:,} MHz")
    return ", ".join(p for p in parts if p)


def _age(members: Sequence[GpuView]) -> str:
    ages = [g.age_s for g in members if g.age_s is not None]
    return f"no reading for {max(ages):.0f} s" if ages else "no reading"


def _link_problems(snapshot: RackSnapshot) -> Iterable[Problem]:
    """Links down, then links whose error counters keep growing (the warning before a link goes down)."""
    for t in snapshot.links:
        place = f"{snapshot.gpu(t.gpu).label} link {t.link}"
        errors = f"error counters +{t.errors:,} in {t.samples} samples" if t.samples else ""
        if t.down:
            up = snapshot.gpu(t.gpu).row.get("nvlink_up")
            detail = ", ".join(p for p in (f"{up}/{LINKS_PER_GPU} up" if up is not None else "", errors) if p)
            yield Problem(Rank.LINK_DOWN, "down", place, detail, "nvlink", t.gpu, t.link)
        elif t.samples >= CLIMBING_SAMPLES:
            yield Problem(Rank.ERRORS, "errors climbing", place, errors, "nvlink", t.gpu, t.link)


def _xid_problems(snapshot: RackSnapshot, rules: AlertRules) -> Iterable[Problem]:
    """XIDs of the last xid window (the alert rule's), one line per GPU naming its newest XID."""
    if snapshot.ts_ms is None:
        return
    since = snapshot.ts_ms - rules.xid.window_s * 1000
    newest: dict[int, tuple[int, int]] = {}
    for ev in snapshot.events:  # newest first
        if ev.kind == EventKind.XID and ev.gpu is not None and ev.ts_ms > since:
            count = newest.get(ev.gpu, (ev.code or 0, 0))
            newest[ev.gpu] = (count[0], count[1] + 1)
    for gpu, (code, n) in newest.items():
        if 0 <= gpu < len(snapshot.gpus):
            detail = XID_NAMES.get(code, "") + (f" ({n} XIDs)" if n > 1 else "")
            yield Problem(Rank.XID, f"XID {code}", snapshot.gpu(gpu).label, detail.strip(), gpu=gpu)


def _straggler_problems(snapshot: RackSnapshot, serving: ServingSnapshot | None) -> Iterable[Problem]:
    """GPUs whose SM clock sits far below their group's (the skew view's stragglers, group_skew's rule).

    Only groups of 3 GPUs or more can name one (group_skew), so the rack's one-GPU servers are not
    measured on every redraw: the trays and the larger servers are.
    """
    groups = [
        ("tray", f"tray {row.tray:02d}", row.gpus) for row in snapshot.layout.rows if row.tray is not None
    ]
    for inst in serving.instances if serving else ():
        groups.append(("instance", inst.endpoint, parse_gpus(inst.gpus)))
    for kind, name, gpus in groups:
        members = [snapshot.gpu(g) for g in gpus if g is not None and 0 <= g < len(snapshot.gpus)]
        if len(members) < MIN_GROUP:
            continue
        group = group_skew(kind, name, members)
        for s in group.stragglers:
            # An idle GPU's low clock is no straggler (the alert engine's rule too).
            if s.metric == "clock" and s.value < s.median and "idle" not in snapshot.gpu(s.gpu).clock_reasons:
                detail = f"SM clock {s.value:,.0f} vs {s.median:,.0f} MHz {group.kind} median"
                yield Problem(Rank.STRAGGLER, "straggler", snapshot.gpu(s.gpu).label, detail, gpu=s.gpu)


def _endpoint_problems(snapshot: RackSnapshot, serving: ServingSnapshot | None) -> Iterable[Problem]:
    """Servers that do not serve: down or stale (they do not answer), or answering without serving (the
    serving view's fault: on a lost GPU, or stalled with its queue growing)."""
    if serving is None:
        return
    for inst in serving.instances:
        if inst.state in ANSWERED_NAMES and not inst.fault:
            continue
        gpus = parse_gpus(inst.gpus)
        on = gpus_place(snapshot, gpus)
        place = f"{inst.endpoint} on {on}" if on else inst.endpoint
        if inst.fault:
            detail = inst.fault_reason
        else:
            detail = f"no answer for {inst.age_s:.0f} s" if inst.age_s is not None else ""
            if inst.waiting:
                detail = ", ".join(p for p in (detail, f"{inst.waiting:,} waiting") if p)
        gpu = gpus[0] if len(gpus) == 1 else None
        yield Problem(Rank.ENDPOINT, inst.status, place, detail, "serving", gpu, endpoint=inst.endpoint)


def _collector_problems(snapshot: RackSnapshot) -> Iterable[Problem]:
    """Collectors that missed their tick recently."""
    if snapshot.ts_ms is None:
        return
    since = snapshot.ts_ms - LATE_WINDOW_INTERVALS * snapshot.interval_ms
    for ev in snapshot.events:
        if ev.kind == EventKind.COLLECTOR_LATE and ev.ts_ms > since:
            yield Problem(Rank.COLLECTOR, "late", ev.source or "collector", ev.describe(), "events")


ALERT_RANKS: dict[int, tuple[Rank, str]] = {
    AlertRule.TEMP_MARGIN: (Rank.THERMAL, "thermal"),
    AlertRule.POWER: (Rank.POWER, "power"),
    AlertRule.XID: (Rank.XID, "XID"),
    AlertRule.LINKS_DOWN: (Rank.LINK_DOWN, "links down"),
    AlertRule.LINK_ERRORS: (Rank.ERRORS, "errors climbing"),
    AlertRule.TOKENS_DROP: (Rank.ENDPOINT, "tokens/s fell"),
    AlertRule.STALE: (Rank.SILENT, "not answering"),
    AlertRule.ECC_UNCORRECTED: (Rank.ERRORS, "uncorrectable ECC"),
    AlertRule.ROW_REMAP_FAILURE: (Rank.ERRORS, "row remap failed"),
    AlertRule.STRAGGLER: (Rank.STRAGGLER, "straggler"),
    AlertRule.TRAY_DRIFT: (Rank.THERMAL, "warming"),
}
"""How each alert rule's alert reads as a problem."""


def _alert_problems(
    snapshot: RackSnapshot,
    serving: ServingSnapshot | None,
    alerts: Sequence[ActiveAlert],
    found: Sequence[Problem],
) -> Iterable[Problem]:
    """The active alerts the snapshot's own problems do not already name."""
    named_gpus = {(p.rank, p.gpu) for p in found if p.gpu is not None}
    named = {p.endpoint for p in found if p.endpoint} | {p.place for p in found}
    for a in alerts:
        if a.name is not None:  # recording stopped: not a rule's alert, as urgent
            yield Problem(Rank.COLLECTOR, a.name, a.source or "recorder", a.detail or "", "events")
            continue
        rank, what = ALERT_RANKS.get(a.code or 0, (Rank.COLLECTOR, a.rule))
        if a.gpu is not None and 0 <= a.gpu < len(snapshot.gpus):
            label = snapshot.gpu(a.gpu).label
            if a.link is not None:
                place, view = f"{label} link {a.link}", "nvlink"
            else:
                place, view = label, "nvlink" if rank is Rank.LINK_DOWN else "detail"
            if place in named or (a.link is None and (rank, a.gpu) in named_gpus):
                continue
            yield Problem(rank, what, place, a.detail or "", view, a.gpu, a.link)
        elif a.code == AlertRule.TRAY_DRIFT and a.source:
            yield _tray_problem(snapshot, a, rank, what)
        elif a.source and a.source not in named and not _is_tray(a.source, found):
            yield _source_problem(snapshot, serving, a, rank, what)


def _tray_problem(snapshot: RackSnapshot, alert: ActiveAlert, rank: Rank, what: str) -> Problem:
    """A tray's alert ('T05'), with its GPUs' temperatures now (the cells' sample), opening the hottest."""
    tray = int(alert.source.lstrip("T") or 0) if alert.source else 0
    temps = {g.index: g.row["temp_gpu_c"] for g in snapshot.gpus if g.row.get("temp_gpu_c") is not None}
    members = {g: t for g, t in temps.items() if snapshot.gpu(g).tray == tray}
    hottest = max(members, key=members.__getitem__, default=None)
    detail = f"fired: {alert.detail}" if alert.detail else ""
    if members:
        median = statistics.median(temps.values())
        now = f"GPUs {min(members.values())}-{max(members.values())} C vs rack median {median:.0f} C"
        detail = f"{now} ({detail})" if detail else now
    return Problem(rank, what, f"tray {alert.source}", detail, gpu=hottest)


def _source_problem(
    snapshot: RackSnapshot, serving: ServingSnapshot | None, alert: ActiveAlert, rank: Rank, what: str
) -> Problem:
    """A server's alert (or another source's), placed on the server's GPUs where the rack knows them."""
    source = alert.source or "rack"
    inst = next((i for i in serving.instances if i.endpoint == source), None) if serving else None
    gpus = parse_gpus(inst.gpus) if inst is not None else ()
    on = gpus_place(snapshot, gpus)
    place = f"{source} on {on}" if on else source
    gpu = gpus[0] if len(gpus) == 1 else None
    return Problem(rank, what, place, alert.detail or "", "serving", gpu, endpoint=source)


def _is_tray(source: str, found: Sequence[Problem]) -> bool:
    """Whether a stale alert's source ('tray 5') is a tray the snapshot already names as silent."""
    if not source.startswith("tray "):
        return False
    number = source.removeprefix("tray ").strip()
    return any(p.place == f"tray T{int(number):02d}" for p in found if number.isdigit())
