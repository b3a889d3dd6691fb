"""The racks of a fleet: each polled by its own Poller into a small head, each summarised into a FleetRow.

Memory per rack is what a row needs, not what the rack view needs: a rack's RackHead keeps the newest
ROW_FRAMES frames without their serving histogram buckets (the row shows no latency percentiles), and
its row builders cache one summary per kept frame. Only the rack open in the rack views gets a full head
(10 minutes, every table), mirrored from the moment it is opened; the fleet holds one such head at a
time. A rack's sources come from a factory (the rack config's scrape source today), so any source type
that produces Frames (monitor.view reads only Frames) slots in. No UI toolkit here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from collectors.alert_recorder import AlertRecorder
from collectors.clock import Clock, WallClock
from collectors.config import RackConfig
from collectors.poller import Poller
from collectors.promql_fleet import FleetPlan, FleetPlanError, FleetQueries
from collectors.source import Source
from monitor.errors import UserError
from monitor.view.alerts_view import AlertTracker
from monitor.view.builder import SnapshotBuilder
from monitor.view.fleet_row import FleetRow, StartGrace, figures_row, fleet_row
from monitor.view.problems import rack_problems
from monitor.view.serving import ServingBuilder
from storage.frame import Frame
from storage.head import Head, thinning_head

log = logging.getLogger(__name__)

ROW_FRAMES = 12
"""Frames a fleet row is built from: the 10 s tokens/s window at 1 Hz plus its first sample, and one
spare. The row's error-counter window is therefore these 11 s, not the rack view's 60 s."""
ROW_TABLES = frozenset({"gpu", "nvlink", "serving", "events", "host"})
"""Tables a fleet row reads; `serving_hist` (about 80 % of a rack frame's bytes) is left out."""

SourceFactory = Callable[[RackConfig, float], Sequence[Source]]
"""(rack config, poll interval) -> the rack's sources."""


class RackHead(Head):
    """A rack's small head for its row; while the rack is open, every full frame also goes to a big head."""

    def __init__(self, capacity: int = ROW_FRAMES) -> None:
        """Keep `capacity` slimmed frames."""
        super().__init__(capacity)
        self._mirror_lock = threading.Lock()
        self._mirror: Head | None = None

    def append(self, frame: Frame) -> None:
        """Keep the frame's row tables; hand the whole frame to the mirror, if one is open."""
        slim = Frame(frame.ts_ms, {k: b for k, b in frame.batches.items() if k in ROW_TABLES})
        with self._mirror_lock:
            super().append(slim)
            if self._mirror is not None:
                self._mirror.append(frame)

    def open_mirror(self) -> Head:
        """A rack view's head that gets every frame from now on, seeded with the frames kept here.

        It thins with age as the one-rack live client's does (storage.head.thinning_head).
        """
        with self._mirror_lock:
            if self._mirror is None:
                mirror = thinning_head()
                mirror.replace(self.frames())
                self._mirror = mirror
            return self._mirror

    def close_mirror(self) -> None:
        """Stop mirroring (the rack view closed): its memory goes."""
        with self._mirror_lock:
            self._mirror = None


@dataclass
class FleetRack:
    """One rack of the fleet: its config, its head and poller, and its row's builders (one thread only)."""

    config: RackConfig
    head: RackHead
    poller: Poller
    builder: SnapshotBuilder = field(default_factory=lambda: SnapshotBuilder(history=ROW_FRAMES - 1))
    serving: ServingBuilder = field(default_factory=lambda: ServingBuilder(history=ROW_FRAMES - 1))
    alerts: AlertTracker = field(default_factory=AlertTracker)
    seen: int = 0
    row: FleetRow | None = None

    @property
    def name(self) -> str:
        """The rack's name."""
        return self.config.name

    def current_row(self) -> FleetRow:
        """The rack's row at its newest frame (rebuilt only when a frame arrived since the last call)."""
        version = self.head.version
        if self.row is not None and version == self.seen:
            return self.row
        frames = self.head.latest(ROW_FRAMES)
        if not frames:
            return FleetRow.waiting(self.name, len(self.builder.layout.gpus))
        self.seen = version
        snapshot = self.builder.build(frames, version=version)
        serving = self.serving.build(frames, snapshot)
        self.alerts.update(frames)
        active = self.alerts.newest_first()
        problems = rack_problems(snapshot, serving, active, self.config.alerts)
        self.row = fleet_row(self.name, snapshot, problems, active)
        return self.row


class QueriedHead:
    """An aggregate rack's 'head': a version that moves with each new row, and the rack's full source
    started only while the rack is open (open_mirror), into a thinning head as the one-rack client's."""

    def __init__(
        self, config: RackConfig, make_sources: SourceFactory, interval: float, clock: Clock | None
    ) -> None:
        self.version = 0
        self._config = config
        self._make_sources = make_sources
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._poller: Poller | None = None
        self._head: Head | None = None

    def open_mirror(self) -> Head:
        """The rack's full head, its source polling from now on (started once; kept until closed)."""
        with self._lock:
            if self._head is None or self._poller is None:
                recorder = AlertRecorder(self._config.alerts)
                sources = [*self._make_sources(self._config, self._interval), recorder]
                self._head = thinning_head()
                self._poller = Poller(sources, self._head, interval=self._interval, clock=self._clock,
                                      sinks=[recorder], down_after=self._config.down_after,
                                      name=f"collector {self._config.name}")  # fmt: skip
                self._poller.start()
            return self._head

    def close_mirror(self) -> None:
        """Stop the rack's full source (the rack view closed): its memory goes."""
        with self._lock:
            poller, self._poller, self._head = self._poller, None, None
        if poller is not None:
            poller.stop()

    def frames(self) -> list[Frame]:
        """No frames are kept for an aggregate rack's row (its figures come from the backend)."""
        return []


@dataclass
class QueriedRack:
    """One rack of an aggregate fleet: its config, its newest row (from FleetQueries) and its head."""

    config: RackConfig
    head: QueriedHead
    builder: SnapshotBuilder = field(default_factory=lambda: SnapshotBuilder(history=1))
    row: FleetRow | None = None
    seen: int = 0
    grace: StartGrace = field(init=False)

    def __post_init__(self) -> None:
        self.grace = StartGrace(self.config.down_after)

    @property
    def name(self) -> str:
        """The rack's name."""
        return self.config.name

    def set_row(self, row: FleetRow) -> None:
        """The newest row (the fleet's query thread); readers see it by the head's version."""
        self.row = row
        self.head.version += 1

    def current_row(self) -> FleetRow:
        """The rack's newest row."""
        self.seen = self.head.version
        return self.row or FleetRow.waiting(self.name, len(self.builder.layout.gpus))


class QueriedFleet:
    """Every rack's row from one backend by a handful of aggregate queries a tick (collectors.promql_fleet);
    the full PromQL source runs only for the rack that is open."""

    def __init__(
        self,
        plan: FleetPlan,
        make_sources: SourceFactory,
        *,
        interval: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        """Raises OSError when the bearer token file cannot be read."""
        self.interval = interval
        self.clock: Clock = clock or WallClock()
        self.queries = FleetQueries(plan, timeout_s=plan_timeout(plan))
        self.racks = [
            QueriedRack(c, QueriedHead(c, make_sources, interval, clock)) for c in plan.racks.values()
        ]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0

    def start(self) -> None:
        """Start the query thread (one round of queries per interval, on the interval's grid)."""
        self._thread = threading.Thread(target=self._run, name="fleet queries", daemon=True)
        self._thread.start()

    def poll(self, ts_ms: int) -> None:
        """One round of queries: every rack's row at `ts_ms`."""
        figures = self.queries.poll(ts_ms)
        for rack in self.racks:
            got = figures[rack.name]
            awaited = rack.grace.awaited(got, rack.config)
            rack.set_row(figures_row(got, rack.config, len(rack.builder.layout.gpus), awaited))
        self.ticks += 1

    def _run(self) -> None:
        step_ms = round(self.interval * 1000)
        while not self._stop.is_set():
            now_ms = round(self.clock.now() * 1000)
            tick = now_ms // step_ms * step_ms
            try:
                self.poll(tick)
            except Exception:  # a bug in one round must not stop the fleet's rows
                log.exception("fleet queries at %d failed", tick)
            wait_s = (tick + step_ms - round(self.clock.now() * 1000)) / 1000
            self._stop.wait(max(wait_s, 0.0) / (getattr(self.clock, "speed", 1.0) or 1.0))

    def stop(self) -> None:
        """Stop the query thread and the open rack's source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for rack in self.racks:
            rack.head.close_mirror()

    def close_sources(self) -> None:
        """Nothing to close before start (no rack source runs until a rack opens)."""

    def rack(self, name: str) -> QueriedRack:
        """The rack called `name`."""
        for rack in self.racks:
            if rack.name == name:
                return rack
        raise KeyError(name)


def plan_timeout(plan: FleetPlan) -> float:
    """The racks' own query timeout at 1 Hz (the first rack's config)."""
    return next(iter(plan.racks.values())).timeout_for(1.0)


def make_fleet(
    configs: Sequence[RackConfig],
    make_sources: SourceFactory,
    *,
    interval: float = 1.0,
    clock: Clock | None = None,
) -> Fleet | QueriedFleet:
    """A QueriedFleet where every rack reads one backend's query API ([promql], the same labels), else
    a Fleet polling every rack's own sources."""
    if configs and all(c.promql is not None for c in configs):
        try:
            plan = FleetPlan.of(configs)
        except FleetPlanError as err:
            log.info("fleet rows from each rack's own source: %s", err)
        else:
            try:
                return QueriedFleet(plan, make_sources, interval=interval, clock=clock)
            except OSError as err:
                where = configs[0].path or configs[0].name
                raise UserError(f"{where}: promql.bearer_token_file: cannot read: {err}") from None
    return Fleet(configs, make_sources, interval=interval, clock=clock)


class Fleet:
    """Every rack's poller, started together and stopped together."""

    def __init__(
        self,
        configs: Sequence[RackConfig],
        make_sources: SourceFactory,
        *,
        interval: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        """Build each rack's sources, head and poller (nothing runs until start()).

        Raises:
            whatever make_sources raises for a bad rack config; sources already built are closed first.
        """
        self.interval = interval
        self.racks: list[FleetRack] = []
        try:
            for config in configs:
                sources = list(make_sources(config, interval))
                recorder = AlertRecorder(config.alerts)
                head = RackHead()
                poller = Poller(
                    [*sources, recorder],
                    head,
                    interval=interval,
                    clock=clock,
                    sinks=[recorder],
                    down_after=config.down_after,
                    name=f"collector {config.name}",
                )
                self.racks.append(FleetRack(config, head, poller))
        except BaseException:
            self.close_sources()
            raise

    def close_sources(self) -> None:
        """Close the sources of pollers that never started."""
        for rack in self.racks:
            for source in rack.poller.sources:
                source.close()

    def start(self) -> None:
        """Start every rack's poller."""
        for rack in self.racks:
            rack.poller.start()

    def stop(self) -> None:
        """Stop every poller (each closes its sources)."""
        for rack in self.racks:
            rack.poller.stop()

    def rack(self, name: str) -> FleetRack:
        """The rack called `name`."""
        for rack in self.racks:
            if rack.name == name:
                return rack
        raise KeyError(name)
