"""nvmlDeviceGetFieldValues for a simulated GPU: which field ids it serves, with what type and scope."""

from __future__ import annotations

import ctypes
import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
SUCCESS = pynvml.NVML_SUCCESS
NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
INVALID_ARGUMENT = pynvml.NVML_ERROR_INVALID_ARGUMENT

Reader = Callable[[GpuSim, GpuSim, int], int | None]
"""(gpu, superchip sibling, scopeId) -> value, or None for NVML_ERROR_INVALID_ARGUMENT (bad scope)."""


def _link(read: Callable[[GpuSim, int], float]) -> Reader:
    # Per-link fields: scopeId is the link; anything else is an invalid argument.
    def reader(gpu: GpuSim, sibling: GpuSim, scope: int) -> int | None:
        return int(read(gpu, scope)) if 0 <= scope < LINKS_PER_GPU else None

    return reader


class FieldUnsupported(Exception):
    """A reader's way to answer NVML_ERROR_NOT_SUPPORTED for one entry."""


def _throughput(per_link: Callable[[GpuSim, int], float], total: Callable[[GpuSim], float]) -> Reader:
    def reader(gpu: GpuSim, sibling: GpuSim, scope: int) -> int | None:
        if scope == ALL_LINKS:
            mode = gpu.links.total_mode
            if mode == "ok":
                return int(total(gpu))
            if mode == "zero":
                return 0
            raise FieldUnsupported
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
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: (
        ULL,
        _plain(lambda g: g.ecc_count(uncorrected=False, aggregate=False)),
    ),
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: (
        ULL,
        _plain(lambda g: g.ecc_count(uncorrected=True, aggregate=False)),
    ),
    pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL: (
        ULL,
        _plain(lambda g: g.ecc_count(uncorrected=False, aggregate=True)),
    ),
    pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL: (
        ULL,
        _plain(lambda g: g.ecc_count(uncorrected=True, aggregate=True)),
    ),
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
        _throughput(lambda g, k: g.links.read_link_tx(k), lambda g: g.links.read_tx()),
    ),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: (
        ULL,
        _throughput(lambda g, k: g.links.read_link_rx(k), lambda g: g.links.read_rx()),
    ),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX: (
        ULL,
        _throughput(
            lambda g, k: g.links.read_link_tx(k) * g.raw_factor(),
            lambda g: g.links.read_tx() * g.raw_factor(),
        ),
    ),
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX: (
        ULL,
        _throughput(
            lambda g, k: g.links.read_link_rx(k) * g.raw_factor(),
            lambda g: g.links.read_rx() * g.raw_factor(),
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

LATENCY_US = 12
"""latencyUsec reported for every entry."""

_ENTRY = struct.Struct("<IIqqIIQ")
"""One c_nvmlFieldValue_t: fieldId, scopeId, timestamp, latencyUsec, valueType, nvmlReturn, union bytes."""
if ctypes.sizeof(pynvml.c_nvmlFieldValue_t) != _ENTRY.size or [
    getattr(pynvml.c_nvmlFieldValue_t, name).offset for name, _ in pynvml.c_nvmlFieldValue_t._fields_
] != [0, 4, 8, 16, 24, 28, 32]:
    raise ImportError("pynvml.c_nvmlFieldValue_t no longer has the layout collectors.sim.fields packs")

_MASKS = {UINT: 0xFFFFFFFF, ULL: (1 << 64) - 1, SINT: 0xFFFFFFFF}
"""What the union member NVML writes keeps of a value: ctypes wraps, the other union bytes stay zero."""


@dataclass(frozen=True)
class FieldRequest:
    """A parsed nvmlDeviceGetFieldValues request; built once per distinct request, as a collector repeats it.

    Attributes:
        entries: per entry (fieldId, scopeId, valueType, mask, reader); reader None means NOT_SUPPORTED.
        field_ids: the distinct field ids asked for (injected errors are taken once per id per call).
        array_type: the ctypes array of c_nvmlFieldValue_t returned.
        layout: packs all entries at once, 7 ints per entry in _ENTRY order.
    """

    entries: tuple[tuple[int, int, int, int, Reader | None], ...]
    field_ids: frozenset[int]
    array_type: type[ctypes.Array[pynvml.c_nvmlFieldValue_t]]
    layout: struct.Struct


def _parse(field_ids: tuple[Any, ...]) -> FieldRequest:
    # Through real structs, so ids wrap or are refused exactly as pynvml's own setters do.
    array_type = pynvml.c_nvmlFieldValue_t * len(field_ids)
    parsed = array_type()
    for entry, field_id in zip(parsed, field_ids, strict=True):
        try:
            (entry.fieldId, entry.scopeId) = field_id
        except TypeError:
            entry.fieldId = field_id
    entries = []
    for entry in parsed:
        value_type, reader = FIELDS.get(entry.fieldId, (0, None))
        entries.append((entry.fieldId, entry.scopeId, value_type, _MASKS.get(value_type, 0), reader))
    layout = struct.Struct("<" + _ENTRY.format.lstrip("<") * len(entries))
    return FieldRequest(tuple(entries), frozenset(e[0] for e in entries), array_type, layout)


_parse_cached = functools.lru_cache(maxsize=64)(_parse)


def parse_request(field_ids: Sequence[Any]) -> FieldRequest:
    """The parsed form of a fieldIds argument: ints (scope 0) or (fieldId, scopeId) pairs."""
    key = tuple(field_ids)
    try:
        hash(key)
    except TypeError:  # e.g. [fieldId, scopeId] lists: parse every call
        return _parse(key)
    return _parse_cached(key)


def fill(
    request: FieldRequest, gpu: GpuSim, sibling: GpuSim, ts_us: int, forced: dict[int, int | None]
) -> ctypes.Array[pynvml.c_nvmlFieldValue_t]:
    """The answer to `request`: value, type, per-entry return code and timestamp in every entry.

    `forced` maps a field id to its injected per-entry return code (the test hook); absent means none.
    Entries that do not succeed keep valueType 0 and a zero value, as a fresh NVML buffer does.
    """
    args: list[int] = []
    for field_id, scope, value_type, mask, reader in request.entries:
        code = forced.get(field_id) if forced else None
        value = None
        if code is None:
            if reader is None:
                code = NOT_SUPPORTED
            else:
                try:
                    value = reader(gpu, sibling, scope)
                    code = INVALID_ARGUMENT if value is None else SUCCESS
                except FieldUnsupported:
                    code = NOT_SUPPORTED
        if value is None:
            args += (field_id, scope, ts_us, LATENCY_US, 0, code, 0)
        else:
            args += (field_id, scope, ts_us, LATENCY_US, value_type, code, value & mask)
    return request.array_type.from_buffer_copy(request.layout.pack(*args))
