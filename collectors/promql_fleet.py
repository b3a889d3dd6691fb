"""A whole fleet's row figures from a Prometheus-compatible query API: a few aggregate queries a tick.

The fleet screen needs per rack only what its row shows: GPUs ok, power, tokens/s, the hottest GPU, links
down, servers not serving and what is most wrong. Reading every rack's series to build that (the PromQL
source: ~20 k series a rack tick, ~0.75 s of our CPU) would cost one core per rack; asking the backend
for the figures themselves costs the same handful of queries whatever the number of racks, and answers
that stay small (sums per rack, and only the GPUs, links and servers that are not fine).

Each figure follows the rack view's rule (monitor.view.builder, storage.rack_total):
- a series counts at tick t when its newest sample is within the rack's [promql] lookback (the PromQL
  source's rule for a page at t): `last_over_time(x[lookback])`;
- power: the sum of the GPUs' power whose state is not LOST or STALE (storage.rack_total.power_total_kw),
  with how many GPUs it covers;
- tokens/s: each series' rate over the rack view's 10 s window, then the sum over the series whose
  server answered within the lookback: `sum by (rack) (rate(x[10s]))`: rate each series, then sum
  (Prometheus' reset rule per series; prometheus.io/docs/prometheus/latest/querying/functions/#rate);
- hottest: the highest temperature of the GPUs whose state is OK, and every GPU that has it (the row
  names the first in rack order, as the rack view does);
- the exceptions (GPUs not OK, links inactive, GPUs with an XID in the alert rule's window, servers
  with a fresh sample) come back one series each: few on a healthy fleet.

A GPU is placed in its rack by its UUID from `rackmon_gpu_info` (tray, module), read on the first tick
and again when an unknown UUID shows up, else by its host's tray and its `gpu` label, as the tray
mapper places it (collectors.mappings.gpu.GpuPageMapper). Errors never raise: a failed query makes
every rack's figures carry its one-line reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from collectors import agent_names as names
from collectors.config import RackConfig
from collectors.mappings.serving_engines import ENGINES
from collectors.promql_api import Instant, QueryApi, read_token
from collectors.rack import GPUS_PER_TRAY, gpu_index

RATE_WINDOW_MS = 10_000
"""The tokens/s window: the rack view's (monitor.view.builder.SnapshotBuilder rate_window_s)."""
INFO_EVERY_TICKS = 300
"""rackmon_gpu_info is read again this often (GPUs placed by UUID rarely change)."""
GPU_TEMP = "DCGM_FI_DEV_GPU_TEMP"
GPU_POWER = "DCGM_FI_DEV_POWER_USAGE"
XID_LAST = "DCGM_FI_DEV_XID_ERRORS"
NVLINK_STATE = "rackmon_nvlink_state"
LOST, STALE = 1, 2
"""storage.schemas.GpuState values of a GPU with no readings of its own (collectors never import storage's
enum here to keep the expressions' numbers visible)."""


class FleetPlanError(ValueError):
    """The racks cannot be read by aggregate queries together; the message says why (one line)."""


def token_names() -> list[str]:
    """Regexes of every engine's generated-token counter (`:` or `_` after each word, as pages print)."""
    found = {n for spec in ENGINES.values() for n in spec.generation_tokens if n.endswith("_total")}
    return sorted(re.sub(r"[_:]", "[_:]", n) for n in found)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _regex_literal(text: str) -> str:
    """`text` matched literally inside a PromQL (RE2) regex."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


@dataclass(frozen=True)
class FleetPlan:
    """Where the fleet's series are and how each rack's are told apart.

    Attributes:
        url: the query API every rack's [promql] names.
        keys: the match labels every rack's [promql] uses (e.g. ('rack',)); their values name the rack.
        racks: match values -> the rack's config.
        lookback_ms / hostname_label / server_label: the racks' shared [promql] settings.
        token_file: the bearer token file, if any.
    """

    url: str
    keys: tuple[str, ...]
    racks: dict[tuple[str, ...], RackConfig]
    lookback_ms: int
    hostname_label: str
    server_label: str
    token_file: object = None
    xid_window_ms: int = 300_000

    @classmethod
    def of(cls, configs: Sequence[RackConfig]) -> FleetPlan:
        """The plan of racks that all read one backend, told apart by the same match labels.

        Raises:
            FleetPlanError: a rack has no [promql] table, or the racks differ in backend, labels or
                lookback, or two racks match the same series (one line naming the rack).
        """
        if not configs:
            raise FleetPlanError("no racks")
        first = configs[0].promql
        racks: dict[tuple[str, ...], RackConfig] = {}
        for config in configs:
            p = config.promql
            if p is None or first is None:
                raise FleetPlanError(f"{config.name}: no [promql] table")
            same = (p.url, dict(p.match).keys(), p.lookback_s, p.hostname_label, p.server_label)
            if same != (first.url, dict(first.match).keys(), first.lookback_s, first.hostname_label,
                        first.server_label):  # fmt: skip
                raise FleetPlanError(f"{config.name}: [promql] differs from {configs[0].name}'s in url, "
                                     "match labels, lookback or label names")  # fmt: skip
            if not p.match:
                raise FleetPlanError(
                    f"{config.name}: [promql] match is empty (no label tells its racks apart)"
                )
            values = tuple(v for _, v in p.match)
            if values in racks:
                raise FleetPlanError(f"{config.name}: matches the same series as {racks[values].name}")
            racks[values] = config
        assert first is not None
        return cls(
            url=first.url,
            keys=tuple(k for k, _ in first.match),
            racks=racks,
            lookback_ms=round(first.lookback_s * 1000),
            hostname_label=first.hostname_label,
            server_label=first.server_label,
            token_file=first.bearer_token_file,
            xid_window_ms=configs[0].alerts.xid.window_s * 1000,
        )

    def selector(self) -> str:
        """The label matchers of every rack of the fleet, e.g. `rack=~"r01|r02"`."""
        parts = []
        for i, key in enumerate(self.keys):
            values = sorted({v[i] for v in self.racks})
            parts.append(f'{key}=~"{_quote("|".join(_regex_literal(v) for v in values))}"')
        return ", ".join(parts)

    def expressions(self) -> dict[str, str]:
        """The tick's queries by name (every one grouped by the rack's labels, or per exception)."""
        sel, by, host = self.selector(), ", ".join(self.keys), self.hostname_label
        look = f"{self.lookback_ms}ms"

        def last(name: str) -> str:
            return f"last_over_time({name}{{{sel}}}[{look}])"

        state = last(names.GPU_STATE)
        no_readings = f"({state} == {LOST} or {state} == {STALE})"
        power = f"({last(GPU_POWER)} unless on (UUID) {no_readings})"
        ok_temp = f"({last(GPU_TEMP)} unless on (UUID) ({state} != 0))"
        tokens = f'{{__name__=~"{"|".join(token_names())}", {sel}}}'
        fresh_tokens = f"last_over_time({tokens}[{look}])"
        rates = f"(rate({tokens}[{RATE_WINDOW_MS}ms]) and on ({by}, {self.server_label}) {fresh_tokens})"
        seen = f"group by ({by}, {host}, UUID) "
        xids = f"{names.XID_COUNT}{{{sel}}}[{self.xid_window_ms}ms]"
        return {
            "gpus_seen": f"count by ({by}, {host}) ({seen}({state}) or {seen}({last(GPU_TEMP)}))",
            "gpus_not_ok": f"{state} != 0",
            "power_w": f"sum by ({by}) {power}",
            "power_n": f"count by ({by}) {power}",
            "hottest": f"{ok_temp} == on ({by}) group_left max by ({by}) {ok_temp}",
            "links_down": f"{last(NVLINK_STATE)} == 0",
            "xid": f"{last(XID_LAST)} and on (UUID) (increase({xids}) > 0)",
            "servers": f"count by ({by}, {self.server_label}) ({fresh_tokens})",
            "tokens": f"sum by ({by}) {rates}",
            "tokens_n": f"count by ({by}) {rates}",
        }

    def info_expression(self) -> str:
        """Every GPU's placement series (UUID -> tray, module)."""
        return f"last_over_time({names.GPU_INFO}{{{self.selector()}}}[{self.lookback_ms}ms])"


@dataclass
class RackFigures:
    """One rack's row figures at one tick, as the backend computed them (GPUs by rack index).

    Attributes:
        gpus_seen: tray host -> GPUs with a fresh sample.
        not_ok: GPU -> its GpuState (LOST, STALE, ERROR), for GPUs not OK.
        power_w / power_n: the GPUs' summed power and how many it covers (None: no GPU covered).
        hottest_c / hottest: the highest OK GPU temperature and every GPU that has it.
        links_down: (GPU, link) of links reporting inactive.
        xids: GPU -> its last XID, for GPUs with an XID in the window.
        servers_fresh: names of the rack's [[server]]s with a fresh sample.
        tokens / tokens_n: summed tokens/s and how many series it covers (None: none covered).
        error: why the figures are missing (a query failed), else ''.
    """

    ts_ms: int
    gpus_seen: dict[str, int] = field(default_factory=dict)
    not_ok: dict[int, int] = field(default_factory=dict)
    power_w: float | None = None
    power_n: int = 0
    hottest_c: float | None = None
    hottest: list[int] = field(default_factory=list)
    links_down: list[tuple[int, int]] = field(default_factory=list)
    xids: dict[int, int] = field(default_factory=dict)
    servers_fresh: set[str] = field(default_factory=set)
    tokens: float | None = None
    tokens_n: int = 0
    error: str = ""


@dataclass
class TickCost:
    """What one fleet tick cost: queries, the slowest answer, bytes and our CPU."""

    queries: int = 0
    answer_s: float = 0.0
    bytes: int = 0
    cpu_s: float = 0.0


class FleetQueries:
    """The fleet's row figures, every rack at once, from one backend (`poll(ts_ms)`)."""

    def __init__(self, plan: FleetPlan, *, timeout_s: float) -> None:
        """Raises OSError when the bearer token file cannot be read."""
        self.plan = plan
        token = read_token(plan.token_file) if plan.token_file is not None else None  # type: ignore[arg-type]
        self.api = QueryApi(plan.url, timeout_s=timeout_s, token=token)
        self.exprs = plan.expressions()
        self._placed: dict[str, int] = {}
        self._ticks = 0
        self._servers = {values: server_names(config) for values, config in plan.racks.items()}
        self._trays = {values: tray_finder(config) for values, config in plan.racks.items()}
        self.last_cost = TickCost()

    def poll(self, ts_ms: int) -> dict[str, RackFigures]:
        """Every rack's figures at `ts_ms`, by rack name."""
        cpu0 = time.process_time()
        exprs = dict(self.exprs)
        if self._ticks % INFO_EVERY_TICKS == 0:
            exprs["info"] = self.plan.info_expression()
        self._ticks += 1
        answers = self.api.instant_many(exprs, ts_ms)
        cost = TickCost(
            len(exprs), max(a.latency_s for a in answers.values()), sum(a.bytes for a in answers.values())
        )
        if "info" in answers:
            self._learn(answers["info"])
        unknown = self._unknown_uuids(answers)
        if unknown and "info" not in answers:  # a GPU came (back): place it before building rows
            info = self.api.instant_many({"info": self.plan.info_expression()}, ts_ms)["info"]
            cost.queries += 1
            self._learn(info)
        figures = self._figures(ts_ms, answers)
        cost.cpu_s = time.process_time() - cpu0
        self.last_cost = cost
        return figures

    def _learn(self, info: Instant) -> None:
        for labels, _ in info.samples:
            try:
                self._placed[labels["UUID"]] = gpu_index(int(labels["tray"]), int(labels["module"]))
            except (KeyError, ValueError):
                continue

    def _unknown_uuids(self, answers: Mapping[str, Instant]) -> bool:
        keys = ("gpus_not_ok", "hottest", "links_down", "xid")
        return any(labels.get("UUID") not in self._placed for k in keys for labels, _ in answers[k].samples)

    def _figures(self, ts_ms: int, answers: Mapping[str, Instant]) -> dict[str, RackFigures]:
        failed = next((a.error for a in answers.values() if a.error), "")
        out = {config.name: RackFigures(ts_ms, error=failed) for config in self.plan.racks.values()}
        if failed:
            return out
        for labels, value, fig, _ in self._each(answers["gpus_seen"], out):
            fig.gpus_seen[labels.get(self.plan.hostname_label, "")] = int(value)
        for key, attr in (("power_w", "power_w"), ("power_n", "power_n"), ("tokens", "tokens"),
                          ("tokens_n", "tokens_n")):  # fmt: skip
            for _, value, fig, _ in self._each(answers[key], out):
                setattr(fig, attr, int(value) if attr.endswith("_n") else value)
        for labels, value, fig, values in self._each(answers["servers"], out):
            name = self._servers[values].get(labels.get(self.plan.server_label, ""))
            if name is not None and value > 0:
                fig.servers_fresh.add(name)
        for key in ("gpus_not_ok", "hottest", "links_down", "xid"):
            for labels, value, fig, values in self._each(answers[key], out):
                gpu = self._gpu(labels, values)
                if gpu is not None:
                    _per_gpu(fig, key, gpu, labels, value)
        for fig in out.values():
            fig.hottest.sort()
            fig.links_down.sort()
        return out

    def _each(
        self, answer: Instant, out: Mapping[str, RackFigures]
    ) -> Iterable[tuple[dict[str, str], float, RackFigures, tuple[str, ...]]]:
        """(labels, value, the rack's figures, the rack's match values) per series of a known rack."""
        for labels, value in answer.samples:
            values = tuple(labels.get(k, "") for k in self.plan.keys)
            config = self.plan.racks.get(values)
            if config is not None:
                yield labels, value, out[config.name], values

    def _gpu(self, labels: Mapping[str, str], values: tuple[str, ...]) -> int | None:
        """The rack index of a GPU series: by UUID (rackmon_gpu_info), else its host's tray + `gpu`."""
        placed = self._placed.get(labels.get("UUID", ""))
        if placed is not None:
            return placed
        tray = self._trays[values](labels.get(self.plan.hostname_label, ""))
        local = labels.get("gpu", "")
        if tray is None or not local.isdigit() or not 0 <= int(local) < GPUS_PER_TRAY:
            return None
        return gpu_index(tray, int(local) + 1)


def _per_gpu(fig: RackFigures, key: str, gpu: int, labels: Mapping[str, str], value: float) -> None:
    """File one GPU series of answer `key` into the rack's figures."""
    if key == "gpus_not_ok":
        fig.not_ok[gpu] = int(value)
    elif key == "hottest":
        fig.hottest_c = value
        fig.hottest.append(gpu)
    elif key == "links_down" and labels.get("link", "").isdigit():
        fig.links_down.append((gpu, int(labels["link"])))
    elif key == "xid":
        fig.xids[gpu] = int(value)


def server_names(config: RackConfig) -> dict[str, str]:
    """Server label value -> [[server]] name: the URL's host:port (Prometheus' default `instance` of a
    scrape target), or the server's name (a relabelled `server` label; needed where servers share a port)."""
    out = {s.name: s.name for s in config.servers}
    out.update({host_port(s.url): s.name for s in config.servers})
    return out


def host_port(url: str) -> str:
    """A [[server]] URL's host:port: the `instance` label Prometheus gives the target it scrapes."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or default}"


def tray_finder(config: RackConfig) -> Callable[[str], int | None]:
    """Host -> compute tray by the rack's [promql.trays], its [[tray]] hosts, else its tray_pattern."""
    promql = config.promql
    table = {t.host: t.tray for t in config.trays} | dict(promql.trays if promql else ())
    pattern = re.compile(promql.tray_pattern) if promql and promql.tray_pattern else None

    def tray_of(host: str) -> int | None:
        if host in table:
            return table[host]
        found = pattern.search(host) if pattern is not None else None
        return int(found.group(1)) if found and found.group(1).isdigit() else None

    return tray_of
