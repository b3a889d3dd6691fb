"""The alert rules an operator configures: which rules exist, their thresholds and what each one means.

Kept apart from the engine (collectors.alerts) so the rack config's checker and the TUI's help read
the rules without the evaluation code; collectors.alerts re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Literal


class AlertRule(IntEnum):
    """Every rule; the value is the code an alert event carries."""

    TEMP_MARGIN = 1
    POWER = 2
    XID = 3
    LINKS_DOWN = 4
    LINK_ERRORS = 5
    TOKENS_DROP = 6
    STALE = 7
    ECC_UNCORRECTED = 8
    ROW_REMAP_FAILURE = 9
    STRAGGLER = 10
    TRAY_DRIFT = 11


XID_REMAP_FAILURES = frozenset({64, 157})
"""XIDs of failed memory repair: 64 'ECC page retirement or row remapper recording failure', 157
'Resource Retirement Failure' (the gpu table has no remapping columns; these XIDs are how it shows)."""
GPU_IDLE_REASON = 0x1
"""nvmlClocksEventReasonGpuIdle: an idle GPU's low clock is no straggler."""
STRAGGLER_MIN_RELATIVE = 0.10
"""A straggler's SM clock sits at least this far below the rack's median (as the skew view's tolerance)."""
STRAGGLER_TOKENS_WINDOW_S = 10.0
"""A server's tokens/s for the straggler rule is taken over this many seconds: one tick's rate swings
about 5 % on a steady rack, a window's far less."""


@dataclass(frozen=True)
class Threshold:
    """One rule's settings.

    Attributes:
        on: the value at which the alert fires (after `for_s` seconds past it).
        off: the value at which it clears; between on and off the state holds (hysteresis).
        for_s: seconds the value must stay past `on` before the alert fires.
        window_s: for windowed rules (XIDs, link errors, tokens/s), the window the value is taken over.
        enabled: False turns the rule off.
    """

    on: float
    off: float
    for_s: float = 0.0
    window_s: float = 60.0
    enabled: bool = True


RULE_DIRECTION: dict[str, Literal["high", "low"]] = {
    "temp_margin": "low",
    "power": "high",
    "xid": "high",
    "links_down": "high",
    "link_errors": "high",
    "tokens_drop": "high",
    "stale": "high",
    "ecc_uncorrected": "high",
    "row_remap_failure": "high",
    "straggler": "high",
    "tray_drift": "high",
}
"""'high': fires when the value rises to `on`; 'low': fires when it falls to `on` (e.g. a margin)."""

RULE_HELP: dict[str, str] = {
    "temp_margin": "degrees C left to the GPU's own slowdown temperature",
    "power": "power as a fraction of the GPU's power limit",
    "xid": "XIDs of a GPU within window seconds",
    "links_down": "NVLinks of a GPU that are inactive",
    "link_errors": "samples in the window in which a link's error counters (rx, symbol, recovery) grew",
    "tokens_drop": "fall of an instance's tokens/s (last 10 s) below its window average, as a fraction",
    "stale": "a tray or endpoint not answering (1 = stale)",
    "ecc_uncorrected": "uncorrectable ECC errors a GPU gained within window seconds",
    "row_remap_failure": "row-remapping / retirement failures (XID 64, 157) of a GPU within window seconds",
    "straggler": (
        "a busy GPU whose SM clock, or a busy server whose tokens/s per GPU, sits far below the rack's "
        "median (1 = straggling)"
    ),
    "tray_drift": (
        "degrees C a compute tray's GPUs warmed against the rack's median over window seconds, while "
        "their power did not rise (a cooling fault, seen long before any GPU nears slowdown)"
    ),
}
"""What each rule measures; config errors and the help screen quote it."""


@dataclass(frozen=True)
class AlertRules:
    """The rules of a rack config's [alerts] table (defaults suit a GB300 NVL72)."""

    temp_margin: Threshold = Threshold(on=5, off=8, for_s=10)
    power: Threshold = Threshold(on=0.98, off=0.93, for_s=30)
    xid: Threshold = Threshold(on=1, off=0, window_s=300)
    links_down: Threshold = Threshold(on=1, off=0)
    link_errors: Threshold = Threshold(on=3, off=0, window_s=60)
    tokens_drop: Threshold = Threshold(on=0.3, off=0.15, for_s=10, window_s=300)
    stale: Threshold = Threshold(on=1, off=0, for_s=5)
    ecc_uncorrected: Threshold = Threshold(on=1, off=0, window_s=300)
    row_remap_failure: Threshold = Threshold(on=1, off=0, window_s=3600)
    straggler: Threshold = Threshold(on=1, off=0, for_s=10)
    tray_drift: Threshold = Threshold(on=3, off=1.5, for_s=3, window_s=120)
    bell: bool = False
    """Ring the terminal bell when an alert fires."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The rule names (the [alerts.<name>] tables)."""
        return tuple(f.name for f in fields(cls) if f.name != "bell")

    def rule(self, name: str) -> Threshold:
        """The settings of rule `name`."""
        return getattr(self, name)


def temp_margin_detail(margin_c: int, temp_c: int | None) -> str:
    """'3 C to slowdown (GPU at 86 C)': the temp_margin alert's text, from one sample's row."""
    at = f" (GPU at {temp_c} C)" if temp_c is not None else ""
    return f"{margin_c} C to slowdown{at}"


def power_detail(power_mw: int, limit_mw: int) -> str:
    """'1,372 W of 1,400 W limit (98%)': the power alert's text, from one sample's row."""
    return f"{power_mw / 1000:,.0f} W of {limit_mw / 1000:,.0f} W limit ({power_mw / limit_mw:.0%})"


def versus_text(now: float, baseline: float) -> str:
    """How `now` stands against `baseline`: "31% lower", "4% higher" or "no change" (never "0% lower")."""
    change = now / baseline - 1
    if round(abs(change) * 100) == 0:
        return "no change"
    return f"{abs(change):.0%} {'lower' if change < 0 else 'higher'}"
