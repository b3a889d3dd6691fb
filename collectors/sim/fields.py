"""nvmlDeviceGetFieldValues for a simulated GPU: which field ids it serves, with what type and scope."""

from __future__ import annotations

from collections.abc import Callable

import pynvml

from collectors.rack import LINK_MBPS, LINKS_PER_GPU
from collectors.sim.gpu import (
    GRACE_W,
    HW_POWER_BRAKE,
    HW_THERMAL,
    POWER_LIMIT_MW,
    POWER_MIN_LIMIT_MW,
    SW_POWER_CAP,
    SW_THERMAL,
    GpuSim,
)

ALL_LINKS = 0xFFFFFFFF
"""scopeId that asks NVLINK_THROUGHPUT_* for the sum over all links."""

UINT = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
ULL = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
SINT = pynvml.NVML_VALUE_TYPE_SIGNED_INT

Reader = Callable[[GpuSim, GpuSim, int], int | None]
"""(gpu, superchip sibling, scopeId) -> value, or None for NVML_ERROR_INVALID_ARGUMENT (bad scope)."""


def _link(read: Callable[[GpuSim, int], float]) -> Reader:
    # Per-link fields: scopeId is the link; anything else is an invalid argument.
    def reader(gpu: GpuSim, sibling: GpuSim, scope: int) -> int | None:
        return int(read(gpu, scope)) if 0 <= scope < LINKS_PER_GPU else None

    return reader


def _throughput(per_link: Callable[[GpuSim, int], float], total: Callable[[GpuSim], float]) -> Reader:
    def reader(gpu: GpuSim, sibling: GpuSim, scope: int) -> int | None:
        if scope == ALL_LINKS:
            return int(total(gpu))
        return int(per_link(gpu, scope)) if 0 <= scope < LINKS_PER_GPU else None

    return reader


def _power(gpu: GpuSim, sibling: GpuSim, scope: int) -> int | None:
    if scope == pynvml.NVML_POWER_SCOPE_GPU:
        return gpu.power_mw
    if scope == pynvml.NVML_POWER_SCOPE_MODULE:
        # A module is one Grace and both GPUs of the superchip; both GPUs report about the same.
        return round((gpu.power_w + sibling.power_w + GRACE_W) * 1000)
    return None


def _plain(read: Callable[[GpuSim], int]) -> Reader:
    return lambda gpu, sibling, scope: read(gpu)


FIELDS: dict[int, tuple[int, Reader]] = {
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: (ULL, _plain(lambda g: g.ecc_corrected)),
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: (ULL, _plain(lambda g: g.ecc_uncorrected)),
    pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL: (ULL, _plain(lambda g: g.ecc_aggregate_base + g.ecc_corrected)),
    pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL: (ULL, _plain(lambda g: g.ecc_uncorrected)),
    pynvml.NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP: (ULL, _plain(lambda g: g.throttle_ns[SW_POWER_CAP])),
    pynvml.NVML_FI_DEV_MEMORY_TEMP: (UINT, _plain(lambda g: g.mem_temp)),
    pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: (ULL, _plain(lambda g: int(g.energy_mj))),
    pynvml.NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON: (
        UINT,
        _plain(lambda g: LINK_MBPS if g.links.up_count else 0),
    ),
    pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT: (UINT, _plain(lambda g: LINKS_PER_GPU)),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: (
        ULL,
        _throughput(lambda g, k: g.links.link_tx(k), lambda g: g.links.tx_kib),
    ),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: (
        ULL,
        _throughput(lambda g, k: g.links.link_rx(k), lambda g: g.links.rx_kib),
    ),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX: (
        ULL,
        _throughput(
            lambda g, k: g.links.link_tx(k) * g.raw_factor(), lambda g: g.links.tx_kib * g.raw_factor()
        ),
    ),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX: (
        ULL,
        _throughput(
            lambda g, k: g.links.link_rx(k) * g.raw_factor(), lambda g: g.links.rx_kib * g.raw_factor()
        ),
    ),
    pynvml.NVML_FI_DEV_NVSWITCH_CONNECTED_LINK_COUNT: (UINT, _plain(lambda g: LINKS_PER_GPU)),
    pynvml.NVML_FI_DEV_NVLINK_GET_SPEED: (UINT, _link(lambda g, k: LINK_MBPS if g.links.active[k] else 0)),
    pynvml.NVML_FI_DEV_NVLINK_GET_STATE: (
        UINT,
        _link(
            lambda g, k: (
                pynvml.NVML_NVLINK_STATE_ACTIVE if g.links.active[k] else pynvml.NVML_NVLINK_STATE_INACTIVE
            )
        ),
    ),
    pynvml.NVML_FI_DEV_NVLINK_GET_VERSION: (UINT, _link(lambda g, k: pynvml.NVML_NVLINK_VERSION_5_0)),
    pynvml.NVML_FI_DEV_POWER_AVERAGE: (UINT, _power),
    pynvml.NVML_FI_DEV_POWER_INSTANT: (UINT, _power),
    pynvml.NVML_FI_DEV_POWER_MIN_LIMIT: (UINT, _plain(lambda g: POWER_MIN_LIMIT_MW)),
    pynvml.NVML_FI_DEV_POWER_MAX_LIMIT: (UINT, _plain(lambda g: POWER_LIMIT_MW)),
    pynvml.NVML_FI_DEV_POWER_DEFAULT_LIMIT: (UINT, _plain(lambda g: POWER_LIMIT_MW)),
    pynvml.NVML_FI_DEV_POWER_CURRENT_LIMIT: (UINT, _plain(lambda g: POWER_LIMIT_MW)),
    pynvml.NVML_FI_DEV_POWER_REQUESTED_LIMIT: (UINT, _plain(lambda g: POWER_LIMIT_MW)),
    # T.Limit-relative thresholds, as nvidia-smi shows them on GB300.
    pynvml.NVML_FI_DEV_TEMPERATURE_SHUTDOWN_TLIMIT: (SINT, _plain(lambda g: -5)),
    pynvml.NVML_FI_DEV_TEMPERATURE_SLOWDOWN_TLIMIT: (SINT, _plain(lambda g: -2)),
    pynvml.NVML_FI_DEV_TEMPERATURE_MEM_MAX_TLIMIT: (SINT, _plain(lambda g: 0)),
    pynvml.NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT: (SINT, _plain(lambda g: 0)),
    pynvml.NVML_FI_DEV_NVLINK_COUNT_RCV_ERRORS: (ULL, _link(lambda g, k: g.links.rcv_errors[k])),
    pynvml.NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_SUCCESSFUL_EVENTS: (
        ULL,
        _link(lambda g, k: g.links.recovery_ok[k]),
    ),
    pynvml.NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_FAILED_EVENTS: (
        ULL,
        _link(lambda g, k: g.links.recovery_failed[k]),
    ),
    pynvml.NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_EVENTS: (ULL, _link(lambda g, k: g.links.recovery[k])),
    pynvml.NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS: (ULL, _link(lambda g, k: g.links.symbol_errors[k])),
    pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: (
        UINT,
        _plain(lambda g: pynvml.NVML_GPU_RECOVERY_ACTION_NONE),
    ),
    pynvml.NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN: (
        ULL,
        _plain(lambda g: g.throttle_ns[SW_THERMAL]),
    ),
    pynvml.NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN: (
        ULL,
        _plain(lambda g: g.throttle_ns[HW_THERMAL]),
    ),
    pynvml.NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN: (
        ULL,
        _plain(lambda g: g.throttle_ns[HW_POWER_BRAKE]),
    ),
}
"""Field id -> (NVML_VALUE_TYPE_*, reader). Anything else (legacy 161-163 included) is NOT_SUPPORTED."""

_SETTERS = {UINT: "uiVal", ULL: "ullVal", SINT: "siVal"}


def fill(
    entry: pynvml.c_nvmlFieldValue_t, gpu: GpuSim, sibling: GpuSim, ts_us: int, forced: int | None
) -> None:
    """Fill one requested entry in place: value, type, per-entry return code and timestamp.

    `forced` is an injected per-entry return code (the test hook), or None.
    """
    entry.timestamp = ts_us
    entry.latencyUsec = 12
    if forced is not None:
        entry.nvmlReturn = forced
        return
    spec = FIELDS.get(entry.fieldId)
    if spec is None:
        entry.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return
    value_type, reader = spec
    value = reader(gpu, sibling, entry.scopeId)
    if value is None:
        entry.nvmlReturn = pynvml.NVML_ERROR_INVALID_ARGUMENT
        return
    entry.valueType = value_type
    setattr(entry.value, _SETTERS[value_type], value)
    entry.nvmlReturn = pynvml.NVML_SUCCESS
