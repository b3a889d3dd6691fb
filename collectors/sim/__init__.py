"""The simulated GB300 NVL72 rack: 18 pynvml-compatible trays over 72 simulated GPUs, plus its workload.

What it is: a stand-in for the NVIDIA driver only. Each SimTray answers the `pynvml` functions a
collector calls, with pynvml's real constants, structs and NVMLError classes, so the real NVML
collector runs on it unchanged. Behind the trays a SimRack steps physics calibrated on a real GB300
capture (power, temperature, clocks and their event reasons, HBM, energy, NVLink counters, ECC,
XIDs), a serving workload (per-instance token/request counters, gauges and latency histograms) and
an optional named fault scenario, deterministically from a seed and an injectable clock.

What it is not: not a mock of anything above the driver. Frames, storage, HTTP and the TUI are the
real code paths; the simulator never produces Frames or /metrics pages itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collectors.lazy import lazy_attributes

if TYPE_CHECKING:
    from collectors.sim.model import SimEvent
    from collectors.sim.rack import SimRack
    from collectors.sim.scenarios import SCENARIOS, Fault, Scenario
    from collectors.sim.tray import SimTray
    from collectors.sim.workload import Instance, Workload

__all__ = ["SCENARIOS", "Fault", "Instance", "Scenario", "SimEvent", "SimRack", "SimTray", "Workload"]

_HOMES = {
    "SimEvent": "model",
    "SimRack": "rack",
    "SCENARIOS": "scenarios",
    "Fault": "scenarios",
    "Scenario": "scenarios",
    "SimTray": "tray",
    "Instance": "workload",
    "Workload": "workload",
}
"""Each public name's module. Loaded on first use (PEP 562): `from collectors.sim.scenarios import
SCENARIOS` runs this package's __init__ first, and the command line names the scenarios for every
command's help; the simulator's physics (and pynvml) should load only where a rack is simulated."""


__getattr__ = lazy_attributes(__name__, _HOMES)
