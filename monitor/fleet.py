"""The racks of a fleet: each polled by its own Poller into a small head, each summarised into a FleetRow.

Memory per rack is what a row needs, not what the rack view needs: a rack's RackHead keeps the newest
ROW_FRAMES frames without their serving histogram buckets (the row shows no latency percentiles), and
its row builders cache one summary per kept frame. Only the rack open in the rack views gets a full head
(10 minutes, every table), mirrored from the moment it is opened; the fleet holds one such head at a
time. A rack's sources come from a factory (the rack config's scrape source today), so any source type
that produces Frames (monitor.view reads only Frames) slots in. No UI toolkit here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from collectors.alert_recorder import AlertRecorder
from collectors.clock import Clock
from collectors.config import RackConfig
from collectors.poller import Poller
from collectors.source import Source
from monitor.view.alerts_view import AlertTracker
from monitor.view.builder import SnapshotBuilder
from monitor.view.fleet_row import FleetRow, fleet_row
from monitor.view.problems import rack_problems
from monitor.view.serving import ServingBuilder
from storage.frame import Frame
from storage.head import Head, thinning_head

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
