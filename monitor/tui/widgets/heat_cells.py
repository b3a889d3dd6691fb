"""What a heatmap cell and a switch row say, readable without colour: pure text, no widget needed."""

from __future__ import annotations

from monitor.view.metrics import Metric, fmt_count, fmt_rate
from monitor.view.model import CellState, GpuView, SwitchTrayView


def cell_text(gpu: GpuView, metric: Metric) -> str:
    """What a GPU's cell says, readable without colour: a value, LOST, ERR, ?<age> or '·'."""
    if gpu.state is CellState.LOST:
        return "LOST"
    if gpu.state is CellState.ERROR:
        return "ERR"
    if gpu.state is CellState.NO_DATA:
        return "·"
    if gpu.state is CellState.STALE:
        return "?" if gpu.age_s is None else f"?{_age(gpu.age_s)}"
    return metric.cell(gpu.values.get(metric.name)).strip()


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


def legend_number(value: float, step: float, room: int) -> str:
    """A bucket bound in at most `room` characters (1148 -> '1k' when 4 digits do not fit)."""
    text = f"{value:.0f}" if step >= 1 else f"{value:.1f}"
    if len(text) > room:
        text = f"{value / 1000:.1f}k"
    if len(text) > room:
        text = f"{value / 1000:.0f}k"
    return text[:room]
