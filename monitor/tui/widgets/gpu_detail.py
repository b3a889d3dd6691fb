"""The selected GPU's detail: its label, UUID, state and every current metric."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from monitor.tui.widgets.diff_paint import LinePanel
from monitor.view.metrics import METRICS_BY_NAME, MIB_PER_GIB
from monitor.view.model import CellState, GpuView

LINKS = 18


def _v(value: Any, fmt: str = "{}", missing: str = "--") -> str:
    """A raw value through `fmt`, or `missing` when the GPU did not report it."""
    return missing if value is None else fmt.format(value)


def detail_lines(gpu: GpuView) -> list[tuple[str, str]]:
    """(text, style) lines describing one GPU, each at most 39 characters so 80 columns fit."""
    r = gpu.row
    state = gpu.state.value.upper()
    if gpu.state is CellState.STALE and gpu.age_s is not None:
        state += f" ({gpu.age_s:.0f}s old)"
    state_style = "" if gpu.state is CellState.OK else "bold red"
    # A board host's GPU (tray 0 in its rows) has no tray: its NVML index is where it is.
    place = f"NVML index {gpu.index}" if gpu.name is not None else f"tray {gpu.tray} module {gpu.module}"
    lines: list[tuple[str, str]] = [
        (f"{gpu.label}  {place}", "bold"),
        (f"state {state}", state_style),
        (gpu.uuid or "uuid unknown", "dim"),
    ]
    if not r:
        return lines
    power = _v(r.get("power_mw"), "{:.0f}", "--")
    if r.get("power_mw") is not None:
        power = f"{r['power_mw'] / 1000:.0f}"
    limit = f"{r['power_limit_mw'] / 1000:.0f}" if r.get("power_limit_mw") is not None else "--"
    used = r.get("mem_used_mib")
    total = r.get("mem_total_mib")
    hbm = "--"
    if used is not None and total:
        hbm = f"{used / MIB_PER_GIB:.1f}/{total / MIB_PER_GIB:.1f} GiB {used / total * 100:.0f}%"
    nvlink = METRICS_BY_NAME["nvlink"].cell(gpu.values.get("nvlink")).strip()
    errors = METRICS_BY_NAME["errors"].cell(gpu.values.get("errors")).strip()
    ecc = f"{_v(r.get('ecc_corrected'))}/{_v(r.get('ecc_uncorrected'))}"
    lines += [
        (f"util {_v(r.get('util_gpu_pct'), '{}%')}  mem util {_v(r.get('util_mem_pct'), '{}%')}", ""),
        (f"power {power} W of {limit} W", ""),
        (
            f"temp {_v(r.get('temp_gpu_c'), '{}C')}  HBM {_v(r.get('temp_mem_c'), '{}C')}"
            f"  margin {_v(r.get('temp_margin_c'), '{}C')}",
            "",
        ),
        (
            f"SM {_v(r.get('sm_clock_mhz'))} MHz  mem {_v(r.get('mem_clock_mhz'))} MHz"
            f"  P{_v(r.get('pstate'), '{}', '?')}",
            "",
        ),
        (f"HBM {hbm}", ""),
        (f"NVLink {_v(r.get('nvlink_up'))}/{LINKS} up  {nvlink} GB/s", ""),
        (f"errors +{errors} (60s)  ECC c/u {ecc}", "bold red" if gpu.values.get("errors") else ""),
        (f"clocks {', '.join(gpu.clock_reasons) or 'none'}", ""),
    ]
    return lines


class GpuDetail(LinePanel):
    """A panel describing the selected GPU."""

    DEFAULT_CSS = "GpuDetail { height: auto; }"

    def show(self, gpu: GpuView) -> None:
        """Describe `gpu`; only the characters that changed are repainted."""
        text = Text(no_wrap=True, overflow="ellipsis")
        for n, (line, style) in enumerate(detail_lines(gpu)):
            if n:
                text.append("\n")
            text.append(line, style=style)
        self.show_text(text)
