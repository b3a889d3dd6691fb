"""What a heatmap cell and a switch row say, readable without colour: pure text, no widget needed."""

from __future__ import annotations

from monitor.view.heat_values import HeatFrame
from monitor.view.metrics import METRICS_BY_NAME, Metric, fmt_count, fmt_rate
from monitor.view.model import CellState, GpuView, SwitchTrayView

COMPANIONS = ("power", "temp", "clock", "util", "mem", "nvlink")
"""The figures a tall cell adds under its value, two a line, skipping the metric the cell shows."""


def cell_text(gpu: GpuView, metric: Metric, frame: HeatFrame | None = None) -> str:
    """What a GPU's cell says, readable without colour: a value, LOST, ERR, ?<age> or '·'.

    With a frame, the value is the frame's figure for the GPU: its held value, or in deviation mode
    the percent it sits off its group's median ('+31%', '-45%').
    """
    if gpu.state is CellState.OK and frame is not None:
        value = frame.main.get(gpu.index)
        if frame.deviation:
            return "--" if value is None else deviation_text(value)
        return metric.cell(value).strip()
    if gpu.state is CellState.LOST:
        return "LOST"
    if gpu.state is CellState.ERROR:
        return "ERR"
    if gpu.state is CellState.NO_DATA:
        return "·"
    if gpu.state is CellState.STALE:
        return "?" if gpu.age_s is None else f"?{_age(gpu.age_s)}"
    return metric.cell(gpu.values.get(metric.name)).strip()


def deviation_text(percent: float) -> str:
    """Percent off the median in at most 5 characters: '0%', '+3%', '-45%', '+999%'."""
    shown = max(-999, min(999, round(percent)))
    return f"{shown:+d}%" if shown else "0%"


def companion_text(gpu: GpuView, frame: HeatFrame, line: int, room: int = 99) -> str:
    """Line 1 or 2 under a tall cell's value: two more figures ('1184W 60C'); '' for a GPU not OK.

    In deviation mode the first figure is the metric's own value, so the cell says what it is too.
    A figure that would not fit in `room` characters is left out, never cut.
    """
    if gpu.state is not CellState.OK or line < 1:
        return ""
    names = [n for n in COMPANIONS if n != frame.metric.name]
    if frame.deviation:
        names = [frame.metric.name, *names]
    text = ""
    for name in names[2 * (line - 1) : 2 * line]:
        figure = METRICS_BY_NAME[name].figure(frame.held.get((gpu.index, name)))
        if len(text) + len(figure) + bool(text) > room:
            break
        text = f"{text} {figure}" if text else figure
    return text


def _age(seconds: float) -> str:
    """A short age: 7s, 45s, 3m, 2h."""
    if seconds < 100:
        return f"{seconds:.0f}s"
    if seconds < 6000:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def switch_parts(views: tuple[SwitchTrayView, ...]) -> list[tuple[str, bool]]:
    """The parts of a switch row (one tray or all nine), each with whether it shows trouble.

    Returns:
        [(links up, down?), (throughput, False), (errors, any?), (chips, False)]; the chips part is
        last so a narrow heatmap can drop it.
    """
    ups = [v.links_up for v in views if v.links_up is not None]
    total = sum(v.links_total for v in views)
    rates = [v.gbps for v in views if v.gbps is not None]
    errs = [v.errors for v in views if v.errors is not None]
    up = sum(ups) if ups else None
    err = sum(errs) if errs else None
    # Fixed widths keep the columns of the nine switch rows aligned.
    up_text = f"{up if up is not None else '?':>{len(str(total))}}/{total} up"
    return [
        (up_text, up is not None and up < total),
        (f"{fmt_rate(sum(rates) / 1000) if rates else '   --'} TB/s", False),
        (f"{fmt_count(err) if err is not None else '  --'} err", bool(err)),
        (f"chips {views[0].chips[0]:>2}-{views[-1].chips[1]:<2}", False),
    ]


def switch_text(views: tuple[SwitchTrayView, ...], width: int) -> list[tuple[str, bool]]:
    """The parts of a switch row that fit in `width` (two spaces apart), chips first when they fit.

    Parts are padded so rows align; when that is too wide they lose their padding.
    """
    parts = switch_parts(views)
    chips = parts.pop()

    def length(ps: list[tuple[str, bool]]) -> int:
        return sum(len(t) for t, _ in ps) + 2 * (len(ps) - 1)

    if length([chips, *parts]) <= width:
        return [chips, *parts]
    if length(parts) <= width:
        return parts
    return [(t.strip(), trouble) for t, trouble in parts]
