"""The serving panel: rack tokens/s (generated, prompt) with sparklines, then a line per inference server."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message

from monitor.tui.widgets.diff_paint import LinePanel
from monitor.view.serving import ANSWERED_NAMES, STATUS_NAMES, InstanceView, ServingSnapshot

SPARK = " ▁▂▃▄▅▆▇█"
SPARK_WIDTH = 16
HEADER = "server     state       tok/s  run wait   KV TTFT p50/p99 ITL p50"


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
    """The last `width` values as block characters from their minimum to their maximum.

    A flat series (within 1 % of its top) is a flat mid-height line, so a steady rack does not read
    as a full bar; an all-zero series is blank.
    """
    values = list(values)[-width:]
    top = max(values, default=0.0)
    if top <= 0:
        return " " * len(values)
    low = min(values)
    if top - low <= 0.01 * top:
        return SPARK[4] * len(values)
    steps = len(SPARK) - 2
    return "".join(SPARK[1 + round((v - low) / (top - low) * steps)] for v in values)


def _k(value: float | None) -> str:
    return "--" if value is None else f"{value / 1000:,.1f}k"


def _seconds(value: float | None) -> str:
    return "--" if value is None else f"{value:.2f}"


def state_text(inst: InstanceView) -> str:
    """'ok' / 'partial' ('ok dup3' / 'part dup3': repeated series dropped), or 'DOWN 12s' / 'STALE 3s'
    with the age of the server's last good sample."""
    if inst.fault:
        return inst.fault.upper()  # answers but does not serve: GPU LOST, STALLED
    if inst.state in ANSWERED_NAMES:
        if not inst.dup_samples:
            return inst.state
        return f"{'part' if inst.state == 'partial' else 'ok'} dup{inst.dup_samples}"  # fits 9 columns
    age = f" {inst.age_s:.0f}s" if inst.age_s is not None else ""
    return f"{inst.state.upper()}{age}"


def instance_line(inst: InstanceView) -> Text:
    """One server: state, tokens/s, running, waiting, KV use, TTFT p50/p99 (s), ITL p50 (ms).

    The state comes second so it stays visible on an 80-column screen; a server that does not answer
    is greyed, its figures '--' (they would be stale), its state in bold. A partial server (a series
    NaN or missing) or one with repeated series keeps its figures, its state in yellow.
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    dim = inst.state not in ANSWERED_NAMES
    kv = "--" if inst.kv_cache is None or dim else f"{inst.kv_cache * 100:.0f}%"
    itl = "--" if inst.itl_p50_s is None or dim else f"{inst.itl_p50_s * 1000:.0f}ms"
    ttft = "--" if dim else f"{_seconds(inst.ttft_p50_s)}/{_seconds(inst.ttft_p99_s)}"
    running = "--" if inst.running is None or dim else str(inst.running)
    waiting = "--" if inst.waiting is None or dim else str(inst.waiting)
    text.append(f"{inst.endpoint[:10]:<10} ", style="dim" if dim else "")
    warn = inst.state == "partial" or bool(inst.dup_samples)
    if inst.state == "down" or inst.fault:
        style = "bold red"
    else:
        style = "bold yellow" if dim else ("yellow" if warn else "green")
    text.append(f"{state_text(inst):<9}", style=style)
    text.append(
        f" {_k(inst.tokens_per_s):>7} {running:>4} {waiting:>4} {kv:>4} {ttft:>12} {itl:>7}",
        style="dim" if dim else "",
    )
    return text


def counts_text(snapshot: ServingSnapshot) -> str:
    """'71 ok, 1 gpu lost' (the other statuses only when there are some)."""
    counts = snapshot.counts
    parts = [f"{counts['ok']} ok"] + [f"{counts[k]} {k}" for k in STATUS_NAMES[1:] if counts[k]]
    return ", ".join(parts)


def serving_text(snapshot: ServingSnapshot) -> Text:
    """The whole panel as text (reads without colour: states are words, not-ok lines say their age)."""
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append("generated ", style="bold")
    out.append(f"{_k(snapshot.tokens_per_s):>9} tok/s ", style="bold")
    out.append(sparkline(snapshot.tokens_history))
    out.append("\nprompt    ")
    out.append(f"{_k(snapshot.prompt_per_s):>9} tok/s ")
    out.append(sparkline(snapshot.prompt_history))
    out.append("\n" + HEADER, style="dim")
    # servers that are not ok first: they are what an operator looks for
    for inst in sorted(snapshot.instances, key=lambda i: (i.status == "ok", i.endpoint)):
        out.append("\n")
        out.append_text(instance_line(inst))
    return out


class ServingPanel(LinePanel):
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

    def show(self, snapshot: ServingSnapshot) -> None:
        """Show a snapshot; only the characters that changed are repainted."""
        if snapshot.ts_ms is None:
            return
        self.display = True
        self.set_border_text(subtitle=counts_text(snapshot))
        self.show_text(serving_text(snapshot))
