"""The GPU-side rows of the simulated rack's fast frame path (collectors.sim.frames): an answering
GPU's gpu row and the tick's nvlink columns, built as NvmlCollector builds them from a real tray."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pynvml

from collectors.nvml_fields import links_total
from collectors.rack import LINKS_PER_GPU
from collectors.sim.gpu import MEM_MHZ, MEM_RESERVED_MIB, MEM_TOTAL_MIB, POWER_LIMIT_MW
from collectors.sim.nvlink import LinkSet
from storage.frame import safe_batch
from storage.schemas import GPU, GpuState

__all__ = ["LinkRows", "live_gpu_row"]

_PSTATE = pynvml.NVML_PSTATE_0
_LINK_IDS = list(range(LINKS_PER_GPU))


class LinkRows:
    """One tick's nvlink columns, appended GPU by GPU in rack order."""

    __slots__ = ("gpus", "rcv", "rec", "rec_failed", "rx", "state", "sym", "tx")

    def __init__(self) -> None:
        self.gpus: list[int] = []
        self.state: list[int] = []
        self.tx: list[int] = []
        self.rx: list[int] = []
        self.rcv: list[int] = []
        self.sym: list[int] = []
        self.rec: list[int] = []
        self.rec_failed: list[int] = []

    def add(self, g: int, links: LinkSet, states: list[int]) -> tuple[list[int], list[int]]:
        """Append GPU `g`'s links; return the tx and rx counters read for it (each read is noisy)."""
        link_tx = [int(links.read_link_tx(k)) for k in _LINK_IDS]
        link_rx = [int(links.read_link_rx(k)) for k in _LINK_IDS]
        self.gpus.append(g)
        self.state += states
        self.tx += link_tx
        self.rx += link_rx
        self.rcv += links.rcv_errors
        self.sym += links.symbol_errors
        self.rec += links.recovery
        self.rec_failed += links.recovery_failed
        return link_tx, link_rx

    def batch(self, ts_ms: int, keys: tuple[pa.Array, pa.Array]) -> pa.RecordBatch:
        """The nvlink batch, with the gpu and link key columns built for this set of GPUs."""
        return safe_batch(
            "nvlink",
            {
                "ts": pa.array([ts_ms] * len(self.state), GPU.field("ts").type),
                "gpu": keys[0],
                "link": keys[1],
                "state": self.state,
                "tx_kib": self.tx,
                "rx_kib": self.rx,
                "rx_errors": self.rcv,
                "symbol_errors": self.sym,
                "recovery": self.rec,
                "recovery_failed": self.rec_failed,
            },
        )


def live_gpu_row(
    ts_ms: int, g: int, tray: int, sim: Any, link_tx: list[int], link_rx: list[int]
) -> tuple[Any, ...]:
    """An answering GPU's gpu row, as NvmlCollector reads it from a real tray."""
    links = sim.links
    return (
        ts_ms,
        g,
        sim.id.uuid,
        tray,
        int(GpuState.OK),
        sim.util_gpu,
        sim.util_mem,
        sim.mem_used_mib + MEM_RESERVED_MIB,  # the v1 memory struct counts reserved as used
        MEM_TOTAL_MIB,
        sim.power_mw,
        POWER_LIMIT_MW,
        int(sim.energy_mj),
        sim.temp,
        sim.mem_temp,
        sim.margin,
        sim.sm_mhz,
        MEM_MHZ,
        sim.reasons,
        _PSTATE,
        sim.ecc_corrected,
        sim.ecc_uncorrected,
        *_nvlink_totals(links, link_tx, link_rx),
        links.up_count,
    )


def _nvlink_totals(links: LinkSet, link_tx: list[int], link_rx: list[int]) -> tuple[int | None, int | None]:
    """The gpu row's all-link counters as the NVML collector stores them: what the driver answers for
    the total (0 in "zero" mode, nothing where NOT_SUPPORTED) through the collector's own links_total."""
    if links.total_mode == "ok":
        total_tx, total_rx = int(links.read_tx()), int(links.read_rx())
        return links_total(total_tx, link_tx), links_total(total_rx, link_rx)
    answer = 0 if links.total_mode == "zero" else None
    return links_total(answer, link_tx), links_total(answer, link_rx)
