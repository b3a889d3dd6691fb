"""One GPU as the NVML collector tracks it: its running state, the per-call error policy, and the
fixed-argument calls read every tick.

Split from collectors.nvml so that the collector's tick (which GPUs, which rows) reads apart from how
one GPU is asked (which call, what a failure means).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pynvml

from collectors.nvml_errors import NVML_EXCEPTIONS, Outcome, error_name, outcome_of
from collectors.nvml_fields import FieldPlan
from collectors.nvml_recovery import Backoff
from collectors.nvml_static import GpuInfo

# Keys of the per-GPU "not supported" cache for calls made with fixed arguments.
K_UTIL = "nvmlDeviceGetUtilizationRates"
K_MEMORY = "nvmlDeviceGetMemoryInfo"
K_POWER = "nvmlDeviceGetPowerUsage"
K_ENERGY = "nvmlDeviceGetTotalEnergyConsumption"
K_TEMP_V = "nvmlDeviceGetTemperatureV"
K_TEMP = "nvmlDeviceGetTemperature"
K_MARGIN = "nvmlDeviceGetMarginTemperature"
K_CLOCK_SM = "nvmlDeviceGetClockInfo/SM"
K_CLOCK_MEM = "nvmlDeviceGetClockInfo/MEM"
K_REASONS = "nvmlDeviceGetCurrentClocksEventReasons"
K_PSTATE = "nvmlDeviceGetPerformanceState"
K_ECC_CORRECTED = "nvmlDeviceGetTotalEccErrors/corrected"
K_ECC_UNCORRECTED = "nvmlDeviceGetTotalEccErrors/uncorrected"
K_FIELDS = "nvmlDeviceGetFieldValues"
K_PROCESSES = "nvmlDeviceGetComputeRunningProcesses"


@dataclass(eq=False)
class TrackedGpu:
    """The collector's running state for one GPU."""

    info: GpuInfo
    handle: Any
    plan: FieldPlan
    lost: bool = False
    lost_reported: bool = False
    lost_detail: str = ""
    backoff: Backoff | None = None  # when to probe again, from the tick its loss was reported
    errored: bool = False
    replan: bool = False
    unsupported: set[Any] = field(default_factory=set)
    unsupported_fields: set[tuple[int, int]] = field(default_factory=set)
    state_fallback_links: list[int] = field(default_factory=list)
    reasons: int | None = None  # significant clocks-event bits last seen
    link_states: list[int | None] = field(default_factory=list)


def call_nvml(g: TrackedGpu, key: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Call one NVML function for GPU `g` under the per-call error policy; None when no answer.

    A call the GPU does not support is not made again; GPU_IS_LOST (and its kin) marks the GPU lost,
    after which nothing is called; any other error marks this tick's row as errored.
    """
    if g.lost or key in g.unsupported:
        return None
    try:
        return fn(*args)
    except NVML_EXCEPTIONS as exc:
        outcome = outcome_of(exc)
        if outcome is Outcome.UNSUPPORTED:
            g.unsupported.add(key)
        elif outcome is Outcome.LOST:
            g.lost = True
            g.lost_detail = f"{error_name(exc)} from {key}"
        else:
            g.errored = True
        return None


class BasicReads(NamedTuple):
    """The answers of one GPU's fixed-argument calls for one tick (None where it gave none)."""

    util: Any
    memory: Any
    power: int | None
    energy: int | None
    temp: int | None
    margin: int | None
    sm_clock: int | None
    mem_clock: int | None
    reasons: int | None
    pstate: int | None
    ecc_corrected: int | None
    ecc_uncorrected: int | None


def read_basics(nvml: Any, g: TrackedGpu) -> BasicReads:
    """Make one GPU's fixed-argument calls, in the order the collector always has."""
    h, call = g.handle, call_nvml
    util = call(g, K_UTIL, nvml.nvmlDeviceGetUtilizationRates, h)
    memory = call(g, K_MEMORY, nvml.nvmlDeviceGetMemoryInfo, h)
    power = call(g, K_POWER, nvml.nvmlDeviceGetPowerUsage, h)
    energy = call(g, K_ENERGY, nvml.nvmlDeviceGetTotalEnergyConsumption, h)
    temp = call(g, K_TEMP_V, nvml.nvmlDeviceGetTemperatureV, h, pynvml.NVML_TEMPERATURE_GPU)
    if temp is None and K_TEMP_V in g.unsupported:
        # Drivers before nvmlDeviceGetTemperatureV still have the deprecated call.
        temp = call(g, K_TEMP, nvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
    margin = call(g, K_MARGIN, nvml.nvmlDeviceGetMarginTemperature, h)
    sm_clock = call(g, K_CLOCK_SM, nvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM)
    mem_clock = call(g, K_CLOCK_MEM, nvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_MEM)
    reasons = call(g, K_REASONS, nvml.nvmlDeviceGetCurrentClocksEventReasons, h)
    pstate = call(g, K_PSTATE, nvml.nvmlDeviceGetPerformanceState, h)
    corrected, uncorrected = (
        call(g, key, nvml.nvmlDeviceGetTotalEccErrors, h, kind, pynvml.NVML_VOLATILE_ECC)
        for key, kind in (
            (K_ECC_CORRECTED, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            (K_ECC_UNCORRECTED, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
        )
    )
    return BasicReads(
        util,
        memory,
        power,
        energy,
        temp,
        margin,
        sm_clock,
        mem_clock,
        reasons,
        pstate,
        corrected,
        uncorrected,
    )
