"""Which GPUs the views show and how they lay them out: the whole GB300 NVL72 rack, or the host they run on.

A rack config, the simulator and a replay show the rack: 72 GPUs in 18 compute trays with the switch trays
between them, and coverage counts out of 72. Local mode (`monitor` with no config on a GPU host) shows the
GPUs that exist there, from the NVML collector's static facts: one compute tray's 4 when the driver gives
platform info, or a board of its own (an 8-GPU HGX without platform info, named GPU0..GPU7 as nvidia-smi
numbers them). Coverage counts those GPUs and nothing else, so a host is never "8/72 (64 stale)".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from collectors.rack import (
    COMPUTE_TRAYS,
    GPUS_PER_TRAY,
    LINK_MBPS,
    LINKS_PER_GPU,
    board_gpu_label,
    gpu_index,
    gpu_label,
)

if TYPE_CHECKING:
    from collectors.nvml_static import GpuInfo

LayoutKind = Literal["rack", "tray", "board"]


@dataclass(frozen=True)
class LayoutRow:
    """One heatmap row: its label and the GPU keys of its cells, left to right (None: an empty cell)."""

    label: str
    gpus: tuple[int | None, ...]
    tray: int | None = None
    """The compute tray the row is (None on a board)."""


@dataclass(frozen=True)
class GpuLayout:
    """The GPUs a view shows, in rows of GPUS_PER_TRAY cells.

    Attributes:
        kind: "rack" (the whole NVL72, switch trays drawn between the compute trays), "tray" (the compute
            trays this host is, by platform info or --tray) or "board" (a host not in a rack).
        rows: the compute rows top to bottom (a rack's in tray order; the heatmap adds the switch trays).
        gpus: every GPU key the layout holds, row by row: the set coverage counts.
    """

    kind: LayoutKind
    rows: tuple[LayoutRow, ...]
    gpus: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        """Collect the GPU keys of the rows."""
        keys = tuple(g for row in self.rows for g in row.gpus if g is not None)
        object.__setattr__(self, "gpus", keys)

    @property
    def in_rack(self) -> bool:
        """Whether this is the whole rack (switch trays and rack-wide figures apply)."""
        return self.kind == "rack"

    def label(self, gpu: int) -> str:
        """How an operator names GPU `gpu` here: 'T16.G2', or 'GPU3' on a board."""
        return board_gpu_label(gpu) if self.kind == "board" else gpu_label(gpu)

    def name(self, gpu: int | None) -> str | None:
        """A GPU's name where it is not its rack label (GPU3 on a board), else None."""
        return board_gpu_label(gpu) if self.kind == "board" and gpu in self.gpus else None

    def header(self) -> tuple[str, tuple[str, ...]]:
        """The heatmap's column header: the label column's title and one title per cell column."""
        if self.kind == "board":
            return "GPU", tuple(f"+{c}" for c in range(GPUS_PER_TRAY))
        return "Tray", tuple(f"G{m}" for m in range(1, GPUS_PER_TRAY + 1))

    def nvlink_max_tbps(self) -> float:
        """TX+RX ceiling over every link of the layout's GPUs at NVLink 5's per-link rate (TB/s)."""
        return len(self.gpus) * LINKS_PER_GPU * LINK_MBPS * 2 / 1e6

    def position(self, gpu: int) -> tuple[int, int] | None:
        """(row, column) of GPU `gpu`, or None when the layout does not hold it."""
        for r, row in enumerate(self.rows):
            if gpu in row.gpus:
                return r, row.gpus.index(gpu)
        return None

    def step(self, gpu: int, dx: int, dy: int) -> int:
        """The GPU `dx` cells across and `dy` rows down from `gpu`, clamped to the layout's cells."""
        here = self.position(gpu)
        if here is None:
            return self.gpus[0] if self.gpus else gpu
        r = min(len(self.rows) - 1, max(0, here[0] + dy))
        cells = [c for c, g in enumerate(self.rows[r].gpus) if g is not None]
        c = min(cells[-1], max(cells[0], here[1] + dx))
        while self.rows[r].gpus[c] is None:  # an empty cell in the middle of a row: take the one before
            c -= 1
        return self.rows[r].gpus[c]  # type: ignore[return-value]


def _tray_row(tray: int) -> LayoutRow:
    return LayoutRow(f"T{tray:02d}", tuple(gpu_index(tray, m) for m in range(1, GPUS_PER_TRAY + 1)), tray)


RACK = GpuLayout("rack", tuple(_tray_row(t) for t in range(1, COMPUTE_TRAYS + 1)))
"""The whole GB300 NVL72."""


def board_layout(keys: Sequence[int]) -> GpuLayout:
    """A host not in a rack: its GPUs by NVML index, GPUS_PER_TRAY to a row ('0-3', '4-7')."""
    keys = sorted(keys)
    rows = []
    for start in range(0, len(keys), GPUS_PER_TRAY):
        chunk = keys[start : start + GPUS_PER_TRAY]
        cells = tuple(chunk) + (None,) * (GPUS_PER_TRAY - len(chunk))
        rows.append(LayoutRow(f"{chunk[0]}-{chunk[-1]}" if len(chunk) > 1 else f"{chunk[0]}", cells))
    return GpuLayout("board", tuple(rows))


def host_layout(gpus: Sequence[GpuInfo]) -> GpuLayout:
    """The layout of this host's GPUs, from the NVML collector's static facts (NvmlCollector.gpus).

    GPUs placed in a rack (platform info or a configured tray) show their whole trays; a board's GPUs show
    in NVML order, GPUS_PER_TRAY to a row.
    """
    if not gpus or any(g.placed_by == "board" for g in gpus):
        return board_layout([g.gpu for g in gpus])
    return GpuLayout("tray", tuple(_tray_row(t) for t in sorted({g.tray for g in gpus})))
