"""Group skew: per inference instance and per tray, the spread between its GPUs, and the stragglers.

For tensor/expert-parallel inference the slowest GPU sets the pace of its group, so a GPU far from its
peers matters more than a GPU that is merely busy. A straggler is a GPU whose SM clock, power or
utilisation sits further from its group's median than the metric's tolerance. No UI toolkit here.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from collectors.rack import gpu_label
from monitor.view.model import CellState, GpuView, RackSnapshot
from monitor.view.serving import ServingSnapshot, parse_gpus

SKEW_METRICS: tuple[tuple[str, str, float, float], ...] = (
    # (metric, unit, absolute tolerance, relative tolerance): a GPU is off when |v - median| exceeds both.
    ("clock", "MHz", 150.0, 0.10),
    ("power", "W", 150.0, 0.20),
    ("util", "%", 20.0, 0.25),
)
"""The metrics compared within a group, with how far from the median a GPU may sit."""


@dataclass(frozen=True, slots=True)
class Spread:
    """One metric over a group's GPUs that reported it."""

    metric: str
    unit: str
    low: float | None
    median: float | None
    high: float | None

    @property
    def spread(self) -> float | None:
        """high - low."""
        return None if self.low is None or self.high is None else self.high - self.low


@dataclass(frozen=True, slots=True)
class Straggler:
    """A GPU far from its group's median on one metric."""

    gpu: int
    metric: str
    value: float
    median: float
    label: str = ""
    """How the view names the GPU (its rack label unless given: 'GPU3' on a board host)."""

    @property
    def text(self) -> str:
        """'T05.G3 clock 1410 vs 1965 MHz median'."""
        unit = next(u for m, u, _, _ in SKEW_METRICS if m == self.metric)
        label = self.label or gpu_label(self.gpu)
        return f"{label} {self.metric} {self.value:.0f} vs {self.median:.0f} {unit} median"


@dataclass(frozen=True, slots=True)
class GroupSkew:
    """One group (an inference instance or a tray)."""

    kind: str
    """'instance', 'tray', or 'host' (a board host's GPUs)."""
    name: str
    gpus: tuple[int, ...]
    spreads: tuple[Spread, ...]
    stragglers: tuple[Straggler, ...]
    missing: int
    """GPUs of the group without readings (lost, stale, no data)."""
    span: str = "--"
    """Its first and last GPU as the view names them: 'T05.G1..T05.G4'."""

    def spread(self, metric: str) -> Spread:
        """The spread of one metric."""
        return next(s for s in self.spreads if s.metric == metric)


def group_skew(kind: str, name: str, gpus: Sequence[GpuView]) -> GroupSkew:
    """The spreads and stragglers of one group of GPUs."""
    ok = [g for g in gpus if g.state is CellState.OK]
    spreads = []
    stragglers = []
    labels = {g.index: g.label for g in gpus}
    for metric, unit, tol_abs, tol_rel in SKEW_METRICS:
        values = [(g.index, g.values.get(metric)) for g in ok]
        known = [(i, v) for i, v in values if v is not None]
        if not known:
            spreads.append(Spread(metric, unit, None, None, None))
            continue
        nums = [v for _, v in known]
        median = statistics.median(nums)
        spreads.append(Spread(metric, unit, min(nums), median, max(nums)))
        if len(known) < 3:
            continue  # with two GPUs there is no telling which one is off
        for i, v in known:
            off = abs(v - median)
            if off > tol_abs and off > tol_rel * abs(median):
                stragglers.append(Straggler(i, metric, v, median, labels[i]))
    return GroupSkew(
        kind=kind,
        name=name,
        gpus=tuple(g.index for g in gpus),
        spreads=tuple(spreads),
        stragglers=tuple(stragglers),
        missing=len(gpus) - len(ok),
        span=f"{gpus[0].label}..{gpus[-1].label}" if gpus else "--",
    )


@dataclass(frozen=True, slots=True)
class RackSkew:
    """The groups worth comparing, and how many single-GPU instances were folded away."""

    groups: tuple[GroupSkew, ...]
    folded: int = 0
    """Inference instances on one GPU: one GPU has no spread (its tray's row compares it with its peers)."""


def rack_skew(snapshot: RackSnapshot, serving: ServingSnapshot | None = None) -> RackSkew:
    """Every inference instance on more than one GPU, then every tray; groups with stragglers first."""
    groups = []
    folded = 0
    if serving is not None:
        for inst in serving.instances:
            members = [snapshot.gpu(i) for i in parse_gpus(inst.gpus) if 0 <= i < len(snapshot.gpus)]
            if len(members) == 1:
                folded += 1
            elif members:
                groups.append(group_skew("instance", inst.endpoint, members))
    layout = snapshot.layout
    if layout.kind == "board":  # a host not in a rack has no trays: its GPUs are one group
        groups.append(group_skew("host", "this host", [snapshot.gpu(g) for g in layout.gpus]))
    for row in layout.rows:
        if row.tray is not None:
            groups.append(group_skew("tray", f"tray {row.tray:02d}", snapshot.tray(row.tray)))
    ordered = tuple(sorted(groups, key=lambda g: (not g.stragglers, g.kind != "instance")))
    return RackSkew(ordered, folded)
