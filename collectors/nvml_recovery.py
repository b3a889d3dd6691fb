"""Probing a lost GPU again: when to try (a doubling back-off) and what counts as the same GPU back.

A GPU that answered GPU_IS_LOST can come back without the collector restarting (a GPU reset, a
cleared fault): a fresh process then sees it healthy, so the running collector must look again. It
looks rarely, so a GPU that stays lost costs one handle call per back-off step, not one per tick.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from collectors.nvml_static import UNKNOWN_UUID_PREFIX, GpuFacts, GpuInfo, read_facts

FIRST_PROBE_MS = 5_000
"""The first probe comes 5 s after the loss was seen; each failed one doubles the wait."""
MAX_PROBE_MS = 300_000
"""The wait stops doubling at 5 min: a GPU back after a long repair is found within 5 min."""


@dataclass
class Backoff:
    """When to probe a lost GPU next: FIRST_PROBE_MS after the loss, doubling up to MAX_PROBE_MS."""

    next_ms: int
    wait_ms: int = FIRST_PROBE_MS

    @classmethod
    def after_loss(cls, now_ms: int) -> Backoff:
        """The schedule of a GPU whose loss was seen at `now_ms`."""
        return cls(next_ms=now_ms + FIRST_PROBE_MS)

    def due(self, now_ms: int) -> bool:
        """Whether a probe is due at `now_ms` (the tick's timestamp, so a manual clock drives it)."""
        return now_ms >= self.next_ms

    def failed(self, now_ms: int) -> None:
        """The probe found the GPU still gone: wait twice as long (at most MAX_PROBE_MS)."""
        self.wait_ms = min(self.wait_ms * 2, MAX_PROBE_MS)
        self.next_ms = now_ms + self.wait_ms


def probe(nvml: Any, info: GpuInfo) -> GpuFacts | None:
    """Read the GPU at `info`'s NVML index again; its facts if it answers and is the same GPU, else None.

    The handle is acquired by index (the first call, so a GPU still lost costs one call) and the UUID
    it answers must be `info.uuid`: another GPU at that index (a re-enumerated host) is not this one.
    A GPU lost before its UUID was read has no UUID to compare, so whatever answers at its index is it.
    """
    facts = read_facts(nvml, info.nvml_index)
    if facts.lost or facts.handle is None or facts.uuid is None:
        return None
    if not info.uuid.startswith(UNKNOWN_UUID_PREFIX) and facts.uuid != info.uuid:
        return None
    return facts


def recovered_info(info: GpuInfo, facts: GpuFacts) -> GpuInfo:
    """`info` with the facts read on recovery, keeping its place in the rack (the key of its history).

    A GPU lost at start had no UUID, link count or capacities; they are read now. Its rack index,
    tray and module stay as placed at open, so its rows continue under the same rack index.
    """
    return dataclasses.replace(
        info,
        uuid=facts.uuid or info.uuid,
        name=facts.name or info.name,
        serial=facts.serial or info.serial,
        pci_bus_id=facts.pci_bus_id or info.pci_bus_id,
        mem_total_mib=facts.mem_total_mib or info.mem_total_mib,
        power_limit_mw=facts.power_limit_mw or info.power_limit_mw,
        max_sm_clock_mhz=facts.max_sm_clock_mhz or info.max_sm_clock_mhz,
        max_mem_clock_mhz=facts.max_mem_clock_mhz or info.max_mem_clock_mhz,
        nvlink_count=facts.nvlink_count or info.nvlink_count,
    )
