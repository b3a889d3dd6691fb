"""What the heatmap's cells show: figures held through noise, each GPU against its group's median, and
the scale the colours use. No UI toolkit here.

A busy rack sits at 92-100 % utilisation: on the metric's own scale that is one colour, and the GPU
that is off is found only by reading numbers. Deviation mode colours each GPU by how far it sits from
the median of its group (the GPUs serving the same model, when the serving rows say which GPUs those
are; else the whole rack), so the straggler or the hot GPU is the one cell of another colour.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from monitor.view.deadband import Deadband, HeldFigures
from monitor.view.metrics import DEVIATION_SCALE, METRICS, Metric, Scale, auto_top
from monitor.view.model import CellState, RackSnapshot
from monitor.view.serving import ServingSnapshot
from monitor.view.skew import parse_gpus

MIN_GROUP = 3
"""A group needs this many reporting GPUs for its median to say which one is off (else: the rack's)."""

DEVIATION_BAND = Deadband(0.1, 3.0)
"""A shown deviation follows the GPU once it moves 3 points (or a tenth) from what is shown."""


def deviation_groups(snapshot: RackSnapshot, serving: ServingSnapshot | None) -> dict[int, tuple[int, ...]]:
    """GPU -> the GPUs it is compared with: those serving the same model, else every GPU of the layout.

    A GPU named by servers of two models, or by none, is compared with the rack.
    """
    rack = tuple(snapshot.layout.gpus)
    by_model: dict[str, set[int]] = {}
    if serving is not None:
        for inst in serving.instances:
            if inst.model:
                by_model.setdefault(inst.model, set()).update(parse_gpus(inst.gpus))
    models_of: dict[int, list[str]] = {}
    for model, gpus in by_model.items():
        for gpu in gpus:
            models_of.setdefault(gpu, []).append(model)
    groups: dict[int, tuple[int, ...]] = {}
    for gpu in rack:
        models = models_of.get(gpu, [])
        groups[gpu] = tuple(sorted(by_model[models[0]] & set(rack))) if len(models) == 1 else rack
    return groups


def deviations(
    snapshot: RackSnapshot, metric: Metric, groups: Mapping[int, tuple[int, ...]]
) -> dict[int, float | None]:
    """Per GPU of the layout, percent its value sits off its group's median (None: no value).

    The median is over the group's GPUs that report the metric; a group with fewer than MIN_GROUP of
    them uses the rack's median. The difference is divided by the median, or by the metric's floor
    when the median is smaller (an idle NVLink's 0 GB/s).
    """
    values = {
        g.index: g.values.get(metric.name)
        for g in snapshot.gpus
        if g.state is CellState.OK and g.values.get(metric.name) is not None
    }
    rack_median = _median(values[g] for g in snapshot.layout.gpus if g in values)
    medians: dict[tuple[int, ...], float | None] = {}
    out: dict[int, float | None] = {}
    for gpu, group in groups.items():
        value = values.get(gpu)
        if group not in medians:
            known = [values[g] for g in group if g in values]
            medians[group] = _median(known) if len(known) >= MIN_GROUP else rack_median
        median = medians[group]
        if value is None or median is None:
            out[gpu] = None
            continue
        out[gpu] = (value - median) / max(abs(median), metric.floor) * 100
    return out


def _median(values: Iterable[float | None]) -> float | None:
    nums = [v for v in values if v is not None]
    return statistics.median(nums) if nums else None


@dataclass(frozen=True)
class HeatFrame:
    """The figures one redraw of the heatmap shows.

    Attributes:
        metric: the metric the cells show.
        deviation: whether the main figure is percent off the group median.
        scale: the colour scale of the main figure.
        main: per GPU, the cell's figure: the metric's held value, or its held deviation (percent).
        held: per (GPU, metric name), every metric's held value (the second and third cell lines).
    """

    metric: Metric
    deviation: bool
    scale: Scale
    main: Mapping[int, float | None]
    held: Mapping[tuple[int, str], float | None]

    def bucket(self, gpu: int) -> int | None:
        """The colour bucket of a GPU's main figure."""
        return self.scale.bucket(self.main.get(gpu))


class HeatValues:
    """Builds HeatFrames, keeping the held figures and auto-ranged scale tops between redraws."""

    def __init__(self) -> None:
        """Nothing held yet."""
        self._held = {m.name: HeldFigures(m.band) if m.band else None for m in METRICS}
        self._deviation_held = HeldFigures(DEVIATION_BAND)
        self._deviation_of: tuple[str, bool] | None = None
        self._tops: dict[str, float] = {}

    def frame(
        self,
        snapshot: RackSnapshot,
        metric: Metric,
        *,
        deviation: bool = False,
        serving: ServingSnapshot | None = None,
    ) -> HeatFrame:
        """The figures to show for `snapshot`; held figures move only past their metric's band."""
        held: dict[tuple[int, str], float | None] = {}
        for m in METRICS:
            figures = self._held[m.name]
            for gpu in snapshot.gpus:
                raw = gpu.values.get(m.name) if gpu.state is CellState.OK else None
                held[gpu.index, m.name] = figures.hold(gpu.index, raw) if figures else raw
        if (metric.name, deviation) != self._deviation_of:
            self._deviation_of = (metric.name, deviation)
            self._deviation_held.clear()  # a figure held for another metric means nothing here
        if deviation:
            raw_dev = deviations(snapshot, metric, deviation_groups(snapshot, serving))
            main = {g: self._deviation_held.hold(g, v) for g, v in raw_dev.items()}
            return HeatFrame(metric, True, DEVIATION_SCALE, main, held)
        main = {g.index: held[g.index, metric.name] for g in snapshot.gpus}
        return HeatFrame(metric, False, self._scale(snapshot, metric), main, held)

    def _scale(self, snapshot: RackSnapshot, metric: Metric) -> Scale:
        """The metric's scale; an auto-ranged one reaches just above the rack's busiest GPU."""
        if not metric.auto:
            return metric.scale
        peaks = [
            v
            for g in snapshot.gpus
            if g.state is CellState.OK and (v := g.values.get(metric.name)) is not None
        ]
        top = auto_top(self._tops.get(metric.name), max(peaks) if peaks else None)
        if top is None:
            return metric.scale
        self._tops[metric.name] = top
        return metric.auto_scale(top)
