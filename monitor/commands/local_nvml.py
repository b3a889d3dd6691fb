"""This host's own GPUs through NVML, opened one way for `monitor` (no config), `monitor agent` and
`monitor collect --nvml`: the placement options they share and one clear line when it cannot be done."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.commands.options import check_tray_index_base
from monitor.errors import UserError

if TYPE_CHECKING:
    from collectors.nvml import NvmlCollector

TRAY_HELP = (
    "This host's compute tray 1..18, for a GB300 tray whose driver gives no platform info; leave it out "
    "on a host that is not in a rack (an 8-GPU HGX board shows as GPU0..GPU7)."
)
TrayOption = Annotated[int | None, typer.Option("--tray", help=TRAY_HELP)]


def open_local(tray: int | None, tray_index_base: int, *, why: str) -> NvmlCollector:
    """An NVML collector over this host's GPUs, or a UserError of one line ending in `why`.

    The `pynvml` module is looked up when called, so that a pynvml-compatible one put in its place (a
    simulated host, in tests) is the one opened.

    Args:
        tray: the compute tray for GPUs without platform info (None: platform info, else a board).
        tray_index_base: what nvmlPlatformInfo.trayIndex reads for compute tray 1.
        why: what the command needs the GPUs for, appended to the error ('; try `monitor demo`...').
    """
    import pynvml

    from collectors.nvml import NvmlCollector, NvmlUnavailable, nvml_available

    base = check_tray_index_base(tray_index_base)
    reason = nvml_available(pynvml)
    if reason is not None:
        raise UserError(f"{reason}{why}")
    try:
        return NvmlCollector(pynvml, name=socket.gethostname(), tray=tray, tray_index_base=base)
    except (NvmlUnavailable, ValueError) as err:
        raise UserError(f"{err}{why}") from None


def describe(collector: NvmlCollector, *, span: bool = False) -> str:
    """What was opened: '8x NVIDIA H100 80GB HBM3', with `span` also ', GPU0..GPU7' / ', T16.G1..T16.G4'."""
    gpus = sorted(collector.gpus, key=lambda g: g.gpu)
    text = f"{len(gpus)}x {'/'.join(sorted({g.name or 'unknown GPU' for g in gpus}))}"
    if span and gpus:
        text += f", {gpus[0].label}..{gpus[-1].label}" if len(gpus) > 1 else f", {gpus[0].label}"
    return text
