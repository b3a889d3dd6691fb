"""The command palette: metrics, views, and every GPU by rack index, label (T03.G2) or UUID."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from monitor.view.metrics import METRICS

if TYPE_CHECKING:
    from monitor.tui.rack_ui import RackUi

VIEWS: tuple[tuple[str, str, str], ...] = (
    ("rack", "view: Rack heatmap", "The physical rack, one metric at a time"),
    ("nvlink", "view: NVLink matrix", "72 GPUs x 18 links, traffic or errors, per switch chip"),
    ("serving", "view: Serving instances", "Every inference instance, sortable"),
    ("detail", "view: GPU detail", "The selected GPU: metrics, history, links, events"),
    ("events", "view: Events timeline", "XIDs, clocks, links, lost GPUs, endpoints, alerts"),
    ("skew", "view: Group skew", "Spread within instances and trays; stragglers"),
)
"""(view name for RackApp.action_view, palette title, help)."""


class RackCommands(Provider):
    """Commands for the rack app."""

    @property
    def rack(self) -> RackUi:
        """The app, typed."""
        return self.app  # type: ignore[return-value]

    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        """Every command: (title, callback, help)."""
        app = self.rack
        out: list[tuple[str, Callable[[], object], str]] = [
            (title, partial(app.action_view, name), help) for name, title, help in VIEWS
        ]
        out += [
            (
                f"metric: {m.label} ({m.unit})",
                partial(app.action_metric, m.name),
                f"Colour the rack by {m.label}",
            )
            for m in METRICS
        ]
        for gpu in app.snapshot.gpus:
            title = f"gpu: {gpu.label}  index {gpu.index}  {gpu.uuid or ''}".rstrip()
            out.append((title, partial(app.open_gpu_detail, gpu.index), f"Detail of {gpu.label}"))
        return out

    async def discover(self) -> Hits:
        """Views and metrics before anything is typed."""
        for title, callback, help in self.commands():
            if not title.startswith("gpu:"):
                yield DiscoveryHit(title, callback, help=help)

    async def search(self, query: str) -> Hits:
        """Fuzzy match over every command; a bare number or label also matches its GPU exactly."""
        matcher = self.matcher(query)
        wanted = query.strip().lower()
        for title, callback, help in self.commands():
            exact = title.startswith("gpu:") and wanted in title.lower().split()
            # A near miss (T16.G3 for 'T16.G2') can outscore 1 fuzzily, so an exact hit ranks above any.
            score = matcher.match(title) + (100.0 if exact else 0.0)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help)
