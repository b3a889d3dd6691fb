"""What the simulated NVML hosts and the scenarios see of the rack: its events and a Protocol of the rack.

collectors/sim/rack.py builds the trays, the HGX host and the scenario, and each of them reads and
changes the rack back (its GPUs, workload, lock and clock). Typed against SimRack itself, that was an
import circle; typed against RackModel, imports go one way (rack -> tray, hgx, scenarios -> this).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collectors.clock import Clock
    from collectors.sim.gpu import GpuSim
    from collectors.sim.workload import Workload


@dataclass(frozen=True)
class SimEvent:
    """Something the simulated driver reports through event sets (an XID, an ECC error)."""

    ts: float
    """Epoch seconds of the step it happened in."""
    gpu: int
    event_type: int
    """nvmlEventType* bit."""
    data: int
    """eventData: the XID number for XID events, 0 otherwise."""
    detail: str


class RackModel(Protocol):
    """The simulated rack (collectors.sim.rack.SimRack) as its hosts and scenarios use it.

    Read `gpus` and `workload` under `lock` after sync(), as the trays do.
    """

    seed: int
    clock: Clock
    step_s: float
    lock: AbstractContextManager[Any]
    stepped: threading.Condition
    """Notified after the rack advanced (event-set waiters block on it)."""
    gpus: list[GpuSim]
    workload: Workload
    events: list[SimEvent]
    """Every event so far, oldest first (append-only)."""

    @property
    def time(self) -> float:
        """Epoch seconds of the current state (the last step)."""
        ...

    def sync(self) -> None:
        """Advance the rack to its clock's now."""
        ...

    def lose_gpu(self, gpu: int) -> None:
        """The GPU falls off the bus."""
        ...

    def set_link(self, gpu: int, link: int, *, up: bool) -> None:
        """Take one NVLink link down or bring it back."""
        ...
