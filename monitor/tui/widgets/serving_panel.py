"""The serving panel: rack tokens/s (generated, prompt) with sparklines, then a line per inference server."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from monitor.view.serving import InstanceView, ServingSnapshot

SPARK = " ▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24
HEADER = (
    f"{'server':<12} {'tok/s':>7} {'run':>4} {'wait':>5} {'KV':>4} {'TTFT p50/p99':>12} {'ITL p50':>7}  state"
)


class ServingReady(Message, bubble=False):
    """A new ServingSnapshot was built off the event loop; a newer one replaces it in the queue."""

    def __init__(self, serving: ServingSnapshot) -> None:
        """Carry `serving` to the app."""
        super().__init__()
        self.serving = serving

    def can_replace(self, message: Message) -> bool:
        """Only the newest snapshot matters."""
        return isinstance(message, ServingReady)


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last `width` values as block characters scaled to their maximum (blank when all zero)."""
    values = list(values)[-width:]
    top = max(values, default=0.0)
    if top <= 0:
        return " " * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))] for v in values)


def _k(value: float | None) -> str:
    return "--" if value is None else f"{value / 1000:,.1f}k"


def _seconds(value: float | None) -> str:
    return "--" if value is None else f"{value:.2f}"


def instance_line(inst: InstanceView) -> Text:
    """One server: tokens/s, running, waiting, KV use, TTFT p50/p99 (s), ITL p50 (ms), state (+ age)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    dim = inst.state != "ok"
    kv = "--" if inst.kv_cache is None or dim else f"{inst.kv_cache * 100:.0f}%"
    itl = "--" if inst.itl_p50_s is None or dim else f"{inst.itl_p50_s * 1000:.0f}ms"
    ttft = "--" if dim else f"{_seconds(inst.ttft_p50_s)}/{_seconds(inst.ttft_p99_s)}"
    running = "--" if inst.running is None or dim else str(inst.running)
    waiting = "--" if inst.waiting is None or dim else str(inst.waiting)
    figures = f"{inst.endpoint[:12]:<12} {_k(inst.tokens_per_s):>7} {running:>4} {waiting:>5} {kv:>4}"
    figures += f" {ttft:>12} {itl:>7}  "
    text.append(figures, style="dim" if dim else "")
    state = inst.state.upper() if dim else "ok"
    if dim and inst.age_s is not None:
        state += f" {inst.age_s:.0f}s ago"
    text.append(state, style="bold red" if inst.state == "down" else ("bold yellow" if dim else "green"))
    return text


def serving_text(snapshot: ServingSnapshot) -> Text:
    """The whole panel as text (reads without colour: states are words, stale lines say their age)."""
    out = Text(no_wrap=True, overflow="ellipsis")
    counts = snapshot.counts
    out.append("generated ", style="bold")
    out.append(f"{_k(snapshot.tokens_per_s):>9} tok/s ", style="bold")
    out.append(sparkline(snapshot.tokens_history))
    out.append(f"  {counts['ok']} ok")
    if counts["stale"]:
        out.append(f", {counts['stale']} stale", style="bold yellow")
    if counts["down"]:
        out.append(f", {counts['down']} down", style="bold red")
    out.append("\nprompt    ")
    out.append(f"{_k(snapshot.prompt_per_s):>9} tok/s ")
    out.append(sparkline(snapshot.prompt_history))
    out.append("\n" + HEADER, style="dim")
    # servers that are not ok first: they are what an operator looks for
    for inst in sorted(snapshot.instances, key=lambda i: (i.state == "ok", i.endpoint)):
        out.append("\n")
        out.append_text(instance_line(inst))
    return out


class ServingPanel(Static):
    """Rack serving throughput and the per-server table; hidden until serving data arrives."""

    DEFAULT_CSS = """
    ServingPanel {
        border: round $primary;
        border-title-color: $text;
        padding: 0 1;
        height: auto;
        max-height: 45%;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """An empty, hidden panel; show() fills it."""
        super().__init__("", id=id)
        self.display = False
        self._shown: str | None = None

    def show(self, snapshot: ServingSnapshot) -> None:
        """Show a snapshot; repaints only when the text changed."""
        if snapshot.ts_ms is None:
            return
        self.display = True
        text = serving_text(snapshot)
        if text.markup != self._shown:
            self._shown = text.markup
            self.update(text)
