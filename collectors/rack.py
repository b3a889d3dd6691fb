"""The physical GB300 NVL72 rack: trays, GPUs, NVLink links and switch chips, and where each sits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

COMPUTE_TRAYS = 18
GPUS_PER_TRAY = 4
GPUS = COMPUTE_TRAYS * GPUS_PER_TRAY
SWITCH_TRAYS = 9
CHIPS_PER_SWITCH_TRAY = 2
LINKS_PER_GPU = 18
"""NVLink 5 links per GPU; link k of every GPU lands on switch chip k."""
LINK_MBPS = 53_125
"""Per-link, per-direction signalling rate nvidia-smi reports for NVLink 5 (MB/s)."""

TOP_COMPUTE_TRAYS = 10
"""Compute trays 1-10 sit above the switch trays, 11-18 below."""


@dataclass(frozen=True)
class RackUnit:
    """One shelf of the rack, top to bottom.

    Attributes:
        kind: "compute" or "switch".
        number: compute tray 1..18 or switch tray 1..9.
        slot: the physical slot, 1-based from the top (what nvmlPlatformInfo calls slotNumber).
    """

    kind: Literal["compute", "switch"]
    number: int
    slot: int


def physical_order() -> list[RackUnit]:
    """The rack's shelves from top to bottom: compute 1-10, switch 1-9, compute 11-18."""
    units: list[RackUnit] = []
    for n in range(1, TOP_COMPUTE_TRAYS + 1):
        units.append(RackUnit("compute", n, len(units) + 1))
    for n in range(1, SWITCH_TRAYS + 1):
        units.append(RackUnit("switch", n, len(units) + 1))
    for n in range(TOP_COMPUTE_TRAYS + 1, COMPUTE_TRAYS + 1):
        units.append(RackUnit("compute", n, len(units) + 1))
    return units


def compute_tray_slot(tray: int) -> int:
    """The physical slot of compute tray 1..18."""
    check_tray(tray)
    return tray if tray <= TOP_COMPUTE_TRAYS else tray + SWITCH_TRAYS


TRAY_INDEX_BASES = (0, 1)
TRAY_INDEX_BASE = 0
"""What nvmlPlatformInfo.trayIndex reads for compute tray 1 (the default of `--tray-index-base`).

NVML's reference documents trayIndex as "the tray index within the compute slots in the chassis containing
this GPU (does not include switches)", and slotNumber as "the slot number in the chassis" (v1 names them
computeSlotIndex and chassisPhysicalSlotNumber). NVML's other indices count from 0 (nvmlDeviceGetIndex,
nodeIndex) while its numbers and ids count from 1 (moduleId 1..4 in the GB300 capture); a GB300 capture
(k8s-test-infra's nvidia-smi testdata) reads tray_index 15 at slot_number 25, which is compute tray 16 in
physical_order() only if the index counts from 0. NVIDIA's mock NVML (k8s-test-infra mocknvml) numbers trays
1..18. No document states the base and no hardware here settled it: see docs/hardware-checks.md."""

BOARD_TRAY = 0
"""The tray of a GPU with no place in a rack (a host without platform info, e.g. an 8-GPU HGX board): its
row key is its NVML index and it is named GPU<index>, as nvidia-smi numbers it."""


def tray_from_platform(tray_index: int, base: int = TRAY_INDEX_BASE) -> int:
    """Compute tray 1..18 from nvmlPlatformInfo.trayIndex, which reads `base` for tray 1 (TRAY_INDEX_BASE).

    Raises:
        ValueError: `base` is not 0 or 1, or the tray is outside 1..18.
    """
    if base not in TRAY_INDEX_BASES:
        raise ValueError(f"the tray index base must be 0 or 1, not {base}")
    tray = tray_index - base + 1
    if not 1 <= tray <= COMPUTE_TRAYS:
        raise ValueError(
            f"trayIndex {tray_index} counted from {base} is not a compute tray 1..{COMPUTE_TRAYS}"
        )
    return tray


def gpu_index(tray: int, module: int) -> int:
    """Rack index 0..71 of the GPU in compute tray 1..18, module 1..4 (nvmlPlatformInfo.moduleId)."""
    check_tray(tray)
    if not 1 <= module <= GPUS_PER_TRAY:
        raise ValueError(f"module id {module} is not 1..{GPUS_PER_TRAY}")
    return (tray - 1) * GPUS_PER_TRAY + (module - 1)


def gpu_place(index: int) -> tuple[int, int]:
    """(tray 1..18, module 1..4) of rack GPU index 0..71."""
    if not 0 <= index < GPUS:
        raise ValueError(f"GPU index {index} is not 0..{GPUS - 1}")
    return index // GPUS_PER_TRAY + 1, index % GPUS_PER_TRAY + 1


def switch_chip(link: int) -> tuple[int, int]:
    """(switch tray 1..9, chip 1..2) that NVLink `link` 0..17 of every GPU lands on."""
    if not 0 <= link < LINKS_PER_GPU:
        raise ValueError(f"NVLink {link} is not 0..{LINKS_PER_GPU - 1}")
    return link // CHIPS_PER_SWITCH_TRAY + 1, link % CHIPS_PER_SWITCH_TRAY + 1


def gpu_label(index: int) -> str:
    """How an operator names a GPU: 'T16.G2' (tray 16, module 2)."""
    tray, module = gpu_place(index)
    return f"T{tray:02d}.G{module}"


def board_gpu_label(index: int) -> str:
    """How an operator names GPU `index` of a host that is not in a rack: 'GPU3' (nvidia-smi's numbering)."""
    return f"GPU{index}"


def check_tray(tray: int) -> None:
    """Raise ValueError unless `tray` is a compute tray number 1..18."""
    if not 1 <= tray <= COMPUTE_TRAYS:
        raise ValueError(f"compute tray {tray} is not 1..{COMPUTE_TRAYS}")
