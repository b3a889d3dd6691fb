"""NVML field ids the collector batches, the per-GPU request plan, and fast decoding of c_nvmlFieldValue_t.

One nvmlDeviceGetFieldValues call per GPU per tick carries every field the collector reads (NVML batches
fields served by the same driver call; see shared/reference/nvml.md section 2.2). Decoding 150 entries
through pynvml's _PrintableStructure attribute hooks costs ~10x more than unpacking the array's raw bytes,
so the common case reads the ctypes array as one struct.unpack_from and slices the result.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pynvml

SCOPE_ALL_LINKS = 0xFFFFFFFF
"""scopeId that asks NVML for the sum over all links of an NVLink throughput field."""

FI_MEMORY_TEMP = pynvml.NVML_FI_DEV_MEMORY_TEMP  # 82
FI_NVLINK_LINK_COUNT = pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT  # 91
FI_NVLINK_TX = pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX  # 138, KiB counter
FI_NVLINK_RX = pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX  # 139, KiB counter
FI_NVLINK_STATE = pynvml.NVML_FI_DEV_NVLINK_GET_STATE  # 165
FI_NVLINK_RCV_ERRORS = pynvml.NVML_FI_DEV_NVLINK_COUNT_RCV_ERRORS  # 208
FI_NVLINK_SYMBOL_ERRORS = pynvml.NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS  # 221
FI_NVLINK_RECOVERY = pynvml.NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_EVENTS  # 215
FI_NVLINK_RECOVERY_FAILED = pynvml.NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_FAILED_EVENTS  # 214

GPU_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("nvlink_tx_kib", FI_NVLINK_TX, SCOPE_ALL_LINKS),
    ("nvlink_rx_kib", FI_NVLINK_RX, SCOPE_ALL_LINKS),
    ("temp_mem_c", FI_MEMORY_TEMP, 0),
)
"""(gpu table column, field id, scopeId) of the scalar fields in each GPU's batch."""

LINK_FIELDS: tuple[tuple[str, int], ...] = (
    ("state", FI_NVLINK_STATE),
    ("tx_kib", FI_NVLINK_TX),
    ("rx_kib", FI_NVLINK_RX),
    ("rx_errors", FI_NVLINK_RCV_ERRORS),
    ("symbol_errors", FI_NVLINK_SYMBOL_ERRORS),
    ("recovery", FI_NVLINK_RECOVERY),
    ("recovery_failed", FI_NVLINK_RECOVERY_FAILED),
)
"""(nvlink table column, field id) read for every link 0..count-1 with scopeId = link."""

LINK_COLUMNS: tuple[str, ...] = tuple(name for name, _ in LINK_FIELDS)


def links_total(total: int | None, per_link: Sequence[int | None]) -> int | None:
    """A GPU's all-links throughput counter: NVML's own total, or the sum of its links' counters where
    the total answers 0 or NOT_SUPPORTED (None) while the links count (NVIDIA's mock NVML does this).

    The sum is used only when every link was read: a partial sum would read as a counter reset.
    """
    if total:
        return total
    if not per_link or any(v is None for v in per_link):
        return total
    summed = sum(per_link)  # type: ignore[arg-type]
    return summed if summed > 0 else total


NVLINK_STATE_ACTIVE = pynvml.NVML_NVLINK_STATE_ACTIVE

# c_nvmlFieldValue_t: fieldId u32, scopeId u32, timestamp i64, latencyUsec i64, valueType u32,
# nvmlReturn u32, value (8-byte union). Checked against the real ctypes layout below.
_ENTRY_FORMAT = "IIqqIIQ"
_ENTRY_WIDTH = 7
_VT, _RET, _RAW = 4, 5, 6
_LAYOUT_OK = ctypes.sizeof(pynvml.c_nvmlFieldValue_t) == struct.calcsize("<" + _ENTRY_FORMAT) and [
    getattr(pynvml.c_nvmlFieldValue_t, name).offset for name, _ in pynvml.c_nvmlFieldValue_t._fields_
] == [0, 4, 8, 16, 24, 28, 32]

VT_DOUBLE = pynvml.NVML_VALUE_TYPE_DOUBLE
VT_UINT = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
VT_ULONG = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG
VT_ULONGLONG = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
VT_SLONGLONG = pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG
VT_SINT = pynvml.NVML_VALUE_TYPE_SIGNED_INT
VT_USHORT = pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT
_MASKS = {VT_ULONGLONG: (1 << 64) - 1, VT_ULONG: (1 << 64) - 1, VT_UINT: 0xFFFFFFFF, VT_USHORT: 0xFFFF}
"""Unsigned value types, decoded by masking the union's raw 8 bytes."""
_UNION_MEMBER = {
    VT_DOUBLE: "dVal",
    VT_UINT: "uiVal",
    VT_ULONG: "ulVal",
    VT_ULONGLONG: "ullVal",
    VT_SLONGLONG: "sllVal",
    VT_SINT: "siVal",
    VT_USHORT: "usVal",
}


def decode_raw(value_type: int, raw: int) -> int | None:
    """Decode the 8 raw union bytes (read as little-endian u64) by valueType into an int.

    Narrow members are masked because NVML writes only the member it fills; doubles are rounded, since
    every field the collector reads lands in an integer column. An unknown valueType gives None.
    """
    if value_type in (VT_ULONGLONG, VT_ULONG):
        return raw
    if value_type == VT_UINT:
        return raw & 0xFFFFFFFF
    if value_type == VT_SINT:
        low = raw & 0xFFFFFFFF
        return low - (1 << 32) if low & 0x80000000 else low
    if value_type == VT_SLONGLONG:
        return raw - (1 << 64) if raw & (1 << 63) else raw
    if value_type == VT_USHORT:
        return raw & 0xFFFF
    if value_type == VT_DOUBLE:
        return round(struct.unpack("<d", struct.pack("<Q", raw))[0])
    return None


def _decode_member(value: Any, value_type: int) -> int | None:
    """Decode one entry's c_nvmlValue_t union through its attribute (the slow, general path)."""
    member = _UNION_MEMBER.get(value_type)
    if member is None:
        return None
    x = getattr(value, member)
    return round(x) if value_type == VT_DOUBLE else int(x)


def decode_field_values(values: Any, unpacker: struct.Struct | None = None) -> tuple[list[Any], list[int]]:
    """Decode the result of nvmlDeviceGetFieldValues.

    Args:
        values: what nvmlDeviceGetFieldValues returned: a ctypes array of c_nvmlFieldValue_t (fast path),
            or any sequence of objects with nvmlReturn, valueType and value attributes.
        unpacker: a prebuilt struct.Struct for len(values) entries (saves building one per call).

    Returns:
        (decoded values, nvmlReturn codes): one per entry, in request order; a value is None where its
        nvmlReturn is not NVML_SUCCESS.
    """
    n = len(values)
    if _LAYOUT_OK and isinstance(values, ctypes.Array) and values._type_ is pynvml.c_nvmlFieldValue_t:
        if unpacker is None or unpacker.size != n * 40:
            unpacker = entries_unpacker(n)
        flat = unpacker.unpack_from(values)
        rets = list(flat[_RET::_ENTRY_WIDTH])
        types = flat[_VT::_ENTRY_WIDTH]
        raws = flat[_RAW::_ENTRY_WIDTH]
        if not any(rets):
            if types.count(VT_ULONGLONG) + types.count(VT_ULONG) == n:
                return list(raws), rets
            if _MASKS.keys() >= set(types):
                masks = _MASKS
                return [raw & masks[vt] for vt, raw in zip(types, raws, strict=True)], rets
        out: list[Any] = [
            None if ret else decode_raw(vt, raw) for ret, vt, raw in zip(rets, types, raws, strict=True)
        ]
        return out, rets
    rets = [int(v.nvmlReturn) for v in values]
    out = [
        None if ret else _decode_member(v.value, int(v.valueType))
        for v, ret in zip(values, rets, strict=True)
    ]
    return out, rets


def entries_unpacker(n: int) -> struct.Struct:
    """A struct.Struct that unpacks n c_nvmlFieldValue_t entries in one call."""
    return struct.Struct("<" + _ENTRY_FORMAT * n)


@dataclass
class FieldPlan:
    """One GPU's field-value request, prebuilt once and rebuilt only when a field is found unsupported.

    Attributes:
        request: the (fieldId, scopeId) list passed to nvmlDeviceGetFieldValues.
        gpu_positions: gpu table column -> index into the decoded values.
        link_slices: nvlink column -> start index of a complete block of `link_count` values.
        link_positions: nvlink column -> per-link index (None where that link's field is unsupported);
            only for columns with holes, so the common case is a plain slice.
        unpacker: decodes the whole response with one struct call.
    """

    link_count: int
    request: list[tuple[int, int]] = field(default_factory=list)
    gpu_positions: dict[str, int] = field(default_factory=dict)
    link_slices: dict[str, int] = field(default_factory=dict)
    link_positions: dict[str, list[int | None]] = field(default_factory=dict)
    unpacker: struct.Struct | None = None

    @classmethod
    def build(cls, link_count: int, unsupported: Iterable[tuple[int, int]] = ()) -> FieldPlan:
        """Plan the request for a GPU with `link_count` NVLinks, leaving out (fieldId, scopeId) pairs
        known to be unsupported."""
        skip = set(unsupported)
        plan = cls(link_count=link_count)
        for column, fid, scope in GPU_FIELDS:
            if (fid, scope) not in skip:
                plan.gpu_positions[column] = len(plan.request)
                plan.request.append((fid, scope))
        for column, fid in LINK_FIELDS:
            wanted = [link for link in range(link_count) if (fid, link) not in skip]
            if not wanted:
                continue
            start = len(plan.request)
            plan.request.extend((fid, link) for link in wanted)
            if len(wanted) == link_count:
                plan.link_slices[column] = start
            else:
                positions: list[int | None] = [None] * link_count
                for offset, link in enumerate(wanted):
                    positions[link] = start + offset
                plan.link_positions[column] = positions
        plan.unpacker = entries_unpacker(len(plan.request)) if plan.request else None
        return plan

    def link_values(self, column: str, values: Sequence[Any]) -> list[Any]:
        """The per-link values (length link_count, None where unread) of one nvlink column."""
        start = self.link_slices.get(column)
        if start is not None:
            return list(values[start : start + self.link_count])
        positions = self.link_positions.get(column)
        if positions is None:
            return [None] * self.link_count
        return [None if p is None else values[p] for p in positions]


XID_NAMES: dict[int, str] = {
    13: "Graphics Engine Exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "Preemptive cleanup",
    48: "Double Bit ECC Error",
    61: "Internal micro-controller breakpoint",
    62: "Internal micro-controller halt",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLINK Error",
    79: "GPU has fallen off the bus",
    92: "High single-bit ECC error rate",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
    109: "Context Switch Timeout",
    119: "GSP RPC Timeout",
    120: "GSP Error",
    121: "C2C Link Error",
    136: "ALI Training Fail",
    137: "NVLink Privilege Error",
    140: "Unrecovered ECC Error",
    143: "GPU Initialization Failure",
    144: "NVLINK SAW Error",
    145: "NVLINK RLW Error",
    146: "NVLINK TLW Error",
    147: "NVLINK TREX Error",
    148: "NVLINK NVLPW_CTRL Error",
    149: "NVLINK NETIR Error",
    150: "NVLINK MSE Error",
    151: "Key rotation Error",
    154: "GPU Recovery Action Changed",
    155: "NVLINK SW Defined Error",
    156: "Resource Retirement Event",
    157: "Resource Retirement Failure",
    158: "GPU Fatal Timeout",
    999: "Unknown Xid",
}
"""XIDs an operator on a GB300 rack meets most (dcgm-exporter's table, reference/nvml.md 1.10)."""


def xid_detail(xid: int) -> str:
    """'Xid 79: GPU has fallen off the bus' (or just 'Xid N' for one not in XID_NAMES)."""
    name = XID_NAMES.get(xid)
    return f"Xid {xid}: {name}" if name else f"Xid {xid}"


CLOCKS_EVENT_BITS: tuple[tuple[int, str], ...] = (
    (pynvml.nvmlClocksEventReasonGpuIdle, "GpuIdle"),
    (pynvml.nvmlClocksEventReasonApplicationsClocksSetting, "ApplicationsClocksSetting"),
    (pynvml.nvmlClocksEventReasonSwPowerCap, "SwPowerCap"),
    (pynvml.nvmlClocksEventReasonHwSlowdown, "HwSlowdown"),
    (pynvml.nvmlClocksEventReasonSyncBoost, "SyncBoost"),
    (pynvml.nvmlClocksEventReasonSwThermalSlowdown, "SwThermalSlowdown"),
    (pynvml.nvmlClocksEventReasonHwThermalSlowdown, "HwThermalSlowdown"),
    (pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown, "HwPowerBrakeSlowdown"),
    (pynvml.nvmlClocksEventReasonDisplayClockSetting, "DisplayClockSetting"),
)
"""nvmlClocksEventReason* bits and their names, lowest bit first."""

CLOCKS_EVENT_IGNORED = (
    pynvml.nvmlClocksEventReasonGpuIdle
    | pynvml.nvmlClocksEventReasonApplicationsClocksSetting
    | pynvml.nvmlClocksEventReasonDisplayClockSetting
)
"""Bits that say nothing about a fault: GpuIdle flaps with every gap between kernels, the other two are
settings. A clocks_event is emitted only when the remaining bits change."""


def clocks_event_names(mask: int) -> str:
    """'SwPowerCap+HwSlowdown' for a reason bitmask; unknown bits as hex; 'None' for 0."""
    names = [name for bit, name in CLOCKS_EVENT_BITS if mask & bit]
    known = 0
    for bit, _ in CLOCKS_EVENT_BITS:
        known |= bit
    rest = mask & ~known
    bit = 1
    while rest:
        if rest & bit:
            names.append(f"0x{bit:x}")
            rest &= ~bit
        bit <<= 1
    return "+".join(names) if names else "None"
