"""NVML collector parts: field-value decoding, request plans, error outcomes, event rows, batches."""

import ctypes
import struct

import pynvml
import pytest

from collectors.nvml_errors import Outcome, code_name, outcome_of, outcome_of_code
from collectors.nvml_fields import (
    FI_MEMORY_TEMP,
    FI_NVLINK_STATE,
    FI_NVLINK_SYMBOL_ERRORS,
    FI_NVLINK_TX,
    LINK_COLUMNS,
    SCOPE_ALL_LINKS,
    FieldPlan,
    clocks_event_names,
    decode_field_values,
    decode_raw,
    xid_detail,
)
from collectors.nvml_rows import EventRows
from storage.frame import safe_batch
from storage.plain_frame import PlainFrame
from storage.schemas import EventKind


def field_array(entries):
    """A real ctypes array of c_nvmlFieldValue_t, filled as the driver fills it."""
    arr = (pynvml.c_nvmlFieldValue_t * len(entries))()
    for slot, (fid, ret, vtype, member, value) in zip(arr, entries, strict=True):
        slot.fieldId = fid
        slot.nvmlReturn = ret
        slot.valueType = vtype
        setattr(slot.value, member, value)
    return arr


ALL_TYPES = [
    (1, pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_DOUBLE, "dVal", 37.6),
    (2, pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, "uiVal", 4_000_000_000),
    (3, pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG, "ulVal", 2**40),
    (4, pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "ullVal", 2**64 - 2),
    (5, pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG, "sllVal", -(2**40)),
    (6, pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_SIGNED_INT, "siVal", -5),
    (7, pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT, "usVal", 65_000),
    (8, pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "ullVal", 99),
]
EXPECTED = [38, 4_000_000_000, 2**40, 2**64 - 2, -(2**40), -5, 65_000, None]


def test_decode_every_value_type_from_a_real_ctypes_array():
    values, rets = decode_field_values(field_array(ALL_TYPES))
    assert values == EXPECTED
    assert rets == [0] * 7 + [pynvml.NVML_ERROR_NOT_SUPPORTED]


def test_decode_masks_narrow_members_over_stale_high_bytes():
    # NVML writes only the member it fills: a reused array keeps old high bytes under a uiVal.
    arr = field_array([(1, 0, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "ullVal", 0xDEAD_BEEF_0000_0000)])
    arr[0].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
    arr[0].value.uiVal = 42
    assert decode_field_values(arr)[0] == [42]


def test_slow_path_for_a_plain_sequence_agrees_with_the_fast_path():
    arr = field_array(ALL_TYPES)
    values, rets = decode_field_values(list(arr))  # a list of structs takes the attribute path
    assert values == EXPECTED
    assert rets[-1] == pynvml.NVML_ERROR_NOT_SUPPORTED


def test_decode_raw_rejects_unknown_value_types():
    assert decode_raw(77, 5) is None
    assert decode_raw(pynvml.NVML_VALUE_TYPE_DOUBLE, struct.unpack("<Q", struct.pack("<d", -2.4))[0]) == -2


def test_plan_lays_out_scalar_fields_then_one_block_per_link_column():
    plan = FieldPlan.build(18)
    assert plan.request[:3] == [(138, SCOPE_ALL_LINKS), (139, SCOPE_ALL_LINKS), (FI_MEMORY_TEMP, 0)]
    assert len(plan.request) == 3 + 18 * len(LINK_COLUMNS)
    assert plan.unpacker is not None and plan.unpacker.size == len(plan.request) * 40
    values = list(range(len(plan.request)))
    start = plan.link_slices["tx_kib"]
    assert plan.request[start : start + 18] == [(FI_NVLINK_TX, link) for link in range(18)]
    assert plan.link_values("tx_kib", values) == values[start : start + 18]


def test_plan_leaves_out_unsupported_fields_and_keeps_link_positions():
    plan = FieldPlan.build(4, unsupported={(FI_NVLINK_SYMBOL_ERRORS, 2), (FI_MEMORY_TEMP, 0)})
    assert (FI_NVLINK_SYMBOL_ERRORS, 2) not in plan.request
    assert "temp_mem_c" not in plan.gpu_positions
    values = [f"{fid}/{scope}" for fid, scope in plan.request]
    assert plan.link_values("symbol_errors", values) == ["221/0", "221/1", None, "221/3"]
    assert plan.link_values("state", values) == [f"{FI_NVLINK_STATE}/{k}" for k in range(4)]


def test_plan_without_links_asks_only_scalars():
    plan = FieldPlan.build(0)
    assert [fid for fid, _ in plan.request] == [138, 139, FI_MEMORY_TEMP]
    assert plan.link_values("tx_kib", [1, 2, 3]) == []


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (pynvml.NVML_ERROR_NOT_SUPPORTED, Outcome.UNSUPPORTED),
        (pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, Outcome.UNSUPPORTED),
        (pynvml.NVML_ERROR_NO_PERMISSION, Outcome.UNSUPPORTED),
        (pynvml.NVML_ERROR_GPU_IS_LOST, Outcome.LOST),
        (pynvml.NVML_ERROR_UNKNOWN, Outcome.RETRY),
        (pynvml.NVML_ERROR_TIMEOUT, Outcome.RETRY),
        (pynvml.NVML_ERROR_NO_DATA, Outcome.RETRY),
        (pynvml.NVML_ERROR_NOT_READY, Outcome.RETRY),
    ],
)
def test_error_outcomes(code, outcome):
    assert outcome_of_code(code) is outcome
    assert outcome_of(pynvml.NVMLError(code)) is outcome


def test_library_mismatch_counts_as_unsupported_and_codes_have_names():
    assert outcome_of(pynvml.NVMLLibraryMismatchError("old driver")) is Outcome.UNSUPPORTED
    assert code_name(pynvml.NVML_ERROR_GPU_IS_LOST) == "GPU_IS_LOST"
    assert code_name(12345) == "12345"


def test_clock_event_names_and_xid_details():
    mask = pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonHwSlowdown
    assert clocks_event_names(mask) == "SwPowerCap+HwSlowdown"
    assert clocks_event_names(0x1000 | pynvml.nvmlClocksEventReasonGpuIdle) == "GpuIdle+0x1000"
    assert clocks_event_names(0) == "None"
    assert xid_detail(79) == "Xid 79: GPU has fallen off the bus"
    assert xid_detail(4242) == "Xid 4242"


def test_clocks_change_ignores_idle_flapping_and_names_the_bits():
    rows = EventRows()
    idle, cap = pynvml.nvmlClocksEventReasonGpuIdle, pynvml.nvmlClocksEventReasonSwPowerCap
    slow = pynvml.nvmlClocksEventReasonHwSlowdown
    state = rows.clocks_change(7, None, idle)  # first reading: a baseline
    for reasons in (0, idle, 0, idle):
        state = rows.clocks_change(7, state, reasons)
    assert len(rows) == 0
    state = rows.clocks_change(7, state, cap | slow | idle)
    state = rows.clocks_change(7, state, idle)
    assert rows.kind == [EventKind.CLOCKS_EVENT] * 2
    assert rows.code == [cap | slow, 0]
    assert rows.detail == ["SwPowerCap+HwSlowdown", "None (cleared SwPowerCap+HwSlowdown)"]
    assert state == 0


def test_link_changes_report_down_and_up_after_a_baseline():
    rows = EventRows()
    previous = [None, None, None]
    rows.link_changes(5, previous, [1, 1, 2])
    assert len(rows) == 0
    rows.link_changes(5, previous, [1, 0, None])  # link 2 not read: keeps its state
    rows.link_changes(5, previous, [1, 1, 1])
    assert rows.kind == [EventKind.LINK_DOWN, EventKind.LINK_UP]
    assert rows.link == [1, 1]
    assert previous == [1, 1, 1]
    columns = rows.columns(1_000, "tray-02")
    assert columns["source"] == ["tray-02", "tray-02"]
    assert columns["ts"] == [1_000, 1_000]
    assert safe_batch("events", columns).num_rows == 2


SENTINELS = {
    "ts": [1, 1],
    "gpu": [0, 1],
    "uuid": ["a", "b"],
    "tray": [1, 1],
    "state": [0, 0],
    "power_mw": [0xFFFFFFFF, 300_000],  # int32: NVML's "not available"
    "energy_mj": [2**64 - 1, 5],  # int64: a u64 counter past its range
    "temp_gpu_c": [40, 41],
}
"""Two GPU rows as a driver may answer them: the first one's power and energy are out of range."""


def test_safe_batch_nulls_values_outside_the_column_type():
    batch = safe_batch("gpu", SENTINELS)
    assert batch.column("power_mw").to_pylist() == [None, 300_000]
    assert batch.column("energy_mj").to_pylist() == [None, 5]
    assert batch.column("temp_gpu_c").to_pylist() == [40, 41]


def test_a_plain_frame_nulls_what_its_column_type_cannot_hold():
    """The agent's path (no Arrow): the same values as safe_batch's, null where the type cannot hold them
    (int32 power_mw: 0xFFFFFFFF; int64 energy: 2**64 - 1), a float in an integer column, absent columns."""
    frame = PlainFrame.of(1, {"gpu": {**SENTINELS, "pstate": [0.5, 2]}})
    gpu = frame.table("gpu")
    assert gpu["power_mw"] == [None, 300_000]
    assert gpu["energy_mj"] == [None, 5]
    assert gpu["temp_gpu_c"] == [40, 41]
    assert gpu["pstate"] == [None, 2]
    assert gpu["mem_used_mib"] == [None, None]
    assert frame.to_frame().table("gpu").column("power_mw").to_pylist() == [None, 300_000]
    with pytest.raises(KeyError, match="no column 'watts'"):
        PlainFrame.of(1, {"gpu": {"ts": [1], "watts": [3]}})


def test_layout_of_c_nvml_field_value_is_the_one_decoded():
    assert ctypes.sizeof(pynvml.c_nvmlFieldValue_t) == 40
