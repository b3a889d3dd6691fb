"""nvmlDeviceGetFieldValues' packed fast path answers byte for byte what per-attribute filling would."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import pynvml
import pytest

from collectors.clock import SimClock
from collectors.nvml_fields import FieldPlan
from collectors.sim import SCENARIOS, SimRack, SimTray
from collectors.sim.fields import ALL_LINKS, FIELDS, LATENCY_US, FieldUnsupported

from .conftest import T0

ENERGY = pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION
STATE = pynvml.NVML_FI_DEV_NVLINK_GET_STATE
POWER = pynvml.NVML_FI_DEV_POWER_INSTANT
SHUTDOWN = pynvml.NVML_FI_DEV_TEMPERATURE_SHUTDOWN_TLIMIT

ODD_REQUEST: list[Any] = [
    ENERGY,
    (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS),
    (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX, 17),
    (STATE, 3),
    (STATE, 18),
    9999,
    (9999, 5),
    (POWER, pynvml.NVML_POWER_SCOPE_GPU),
    (POWER, pynvml.NVML_POWER_SCOPE_MODULE),
    (POWER, 7),
    (SHUTDOWN, 0),
    pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC,
]
"""Every kind of entry: bare ids, all-links scope, bad scopes, unknown ids, signed values, power scopes."""
THROUGHPUT_FIELDS = {
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_TX,
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX,
}

_MEMBER = {
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
}


def reference(tray: SimTray, device: int, request: Sequence[Any], forced: dict[int, int]) -> bytes:
    """What the answer must be, filled one attribute at a time through pynvml's own struct setters."""
    gpu = tray.rack.gpus[tray.gpu_indices[device]]
    sibling = tray._sibling(gpu)
    values = (pynvml.c_nvmlFieldValue_t * len(request))()
    for entry, field_id in zip(values, request, strict=True):
        if isinstance(field_id, int):
            entry.fieldId = field_id
        else:
            entry.fieldId, entry.scopeId = field_id
        entry.timestamp = int(tray.rack.time * 1_000_000)
        entry.latencyUsec = LATENCY_US
        spec = FIELDS.get(entry.fieldId)
        if entry.fieldId in forced:
            entry.nvmlReturn = forced[entry.fieldId]
        elif spec is None:
            entry.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        else:
            try:
                value = spec[1](gpu, sibling, entry.scopeId)
            except FieldUnsupported:  # the all-links total on a tray that does not answer it
                entry.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            if value is None:
                entry.nvmlReturn = pynvml.NVML_ERROR_INVALID_ARGUMENT
            else:
                entry.valueType = spec[0]
                setattr(entry.value, _MEMBER[spec[0]], value)
    return bytes(values)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_scenario_matches_the_reference_byte_for_byte(scenario: str) -> None:
    rack = SimRack(seed=5, scenario=scenario, clock=SimClock(T0), fault_at=3)
    plan = FieldPlan.build(18).request
    for tray in rack.trays[::4]:
        tray.nvmlInit()
    handles = {(t.tray, d): t.nvmlDeviceGetHandleByIndex(d) for t in rack.trays[::4] for d in range(4)}
    for _ in range(3):
        rack.clock.advance(4)
        for (tray_no, device), h in handles.items():
            tray = rack.tray_of(tray_no)
            if rack.gpus[tray.gpu_indices[device]].lost:
                continue
            for request in (plan, ODD_REQUEST, plan[:5]):
                values = tray.nvmlDeviceGetFieldValues(h, request)
                assert isinstance(values, ctypes.Array) and values._type_ is pynvml.c_nvmlFieldValue_t
                assert bytes(values) == reference(tray, device, request, {})


def test_entries_read_through_pynvml_attributes(tray: SimTray) -> None:
    h = tray.nvmlDeviceGetHandleByIndex(1)
    values = list(tray.nvmlDeviceGetFieldValues(h, ODD_REQUEST))
    assert [(v.fieldId, v.scopeId) for v in values[:3]] == [
        (ENERGY, 0),
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS),
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_RAW_RX, 17),
    ]
    assert values[0].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    assert values[0].value.ullVal == tray.nvmlDeviceGetTotalEnergyConsumption(h)
    assert values[7].value.uiVal == tray.nvmlDeviceGetPowerUsage(h)
    assert values[8].value.uiVal > values[7].value.uiVal  # the module adds the sibling and the Grace
    assert values[10].valueType == pynvml.NVML_VALUE_TYPE_SIGNED_INT and values[10].value.siVal == -5
    assert [v.nvmlReturn for v in values[4:7]] == [
        pynvml.NVML_ERROR_INVALID_ARGUMENT,
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_NOT_SUPPORTED,
    ]
    assert values[9].nvmlReturn == pynvml.NVML_ERROR_INVALID_ARGUMENT and values[9].valueType == 0
    assert {v.latencyUsec for v in values} == {12}


def test_a_repeated_request_gets_a_fresh_array_with_the_new_time(clock: SimClock, tray: SimTray) -> None:
    h = tray.nvmlDeviceGetHandleByIndex(0)
    request = FieldPlan.build(18).request
    first = tray.nvmlDeviceGetFieldValues(h, request)
    tx_at = request.index((pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS))
    before = first[tx_at].value.ullVal
    first[tx_at].value.ullVal = 0  # the caller owns its array: scribbling on it changes nothing later
    clock.advance(5)
    second = tray.nvmlDeviceGetFieldValues(h, request)
    assert second is not first and second[tx_at].value.ullVal > before
    assert {v.timestamp for v in second} == {int((T0 + 5) * 1_000_000)}
    assert bytes(second) == reference(tray, 0, request, {})


def test_list_pairs_and_tuple_pairs_answer_the_same(tray: SimTray) -> None:
    h = tray.nvmlDeviceGetHandleByIndex(2)
    pairs = [(STATE, k) for k in range(18)]
    as_lists = [[fid, scope] for fid, scope in pairs]
    assert bytes(tray.nvmlDeviceGetFieldValues(h, as_lists)) == bytes(tray.nvmlDeviceGetFieldValues(h, pairs))
    assert len(tray.nvmlDeviceGetFieldValues(h, [])) == 0


def test_a_malformed_entry_is_refused_as_pynvml_refuses_it(tray: SimTray) -> None:
    h = tray.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(ValueError):
        tray.nvmlDeviceGetFieldValues(h, [(ENERGY, 0, 1)])
    with pytest.raises(TypeError):
        tray.nvmlDeviceGetFieldValues(h, [1.5])


def test_injected_field_errors_follow_gpu_and_times(tray: SimTray) -> None:
    h0, h1 = tray.nvmlDeviceGetHandleByIndex(0), tray.nvmlDeviceGetHandleByIndex(1)
    request = [ENERGY, *[(STATE, k) for k in range(18)], (9999, 0)]
    tray.inject_field_error(STATE, pynvml.NVML_ERROR_NOT_READY, gpu=0, times=2)
    tray.inject_field_error(9999, pynvml.NVML_ERROR_UNKNOWN)
    forced = {STATE: pynvml.NVML_ERROR_NOT_READY, 9999: pynvml.NVML_ERROR_UNKNOWN}
    assert bytes(tray.nvmlDeviceGetFieldValues(h1, request)) == reference(
        tray, 1, request, {9999: forced[9999]}
    )
    for _ in range(2):  # one call takes one of `times`, however many entries carry the id
        assert bytes(tray.nvmlDeviceGetFieldValues(h0, request)) == reference(tray, 0, request, forced)
    assert bytes(tray.nvmlDeviceGetFieldValues(h0, request)) == reference(
        tray, 0, request, {9999: forced[9999]}
    )
    tray.clear_errors()
    assert bytes(tray.nvmlDeviceGetFieldValues(h0, request)) == reference(tray, 0, request, {})


def test_a_lost_gpu_raises_for_the_cached_request() -> None:
    rack = SimRack(seed=4, scenario="gpu-lost", clock=SimClock(T0), fault_at=10)
    fault = rack.scenario.fault
    tray = rack.tray_of(fault.tray)
    tray.nvmlInit()
    h = tray.nvmlDeviceGetHandleByIndex(rack.gpus[fault.gpu].id.device)
    request = FieldPlan.build(18).request
    # Every entry answers, but the all-links totals where this tray does not support them.
    unsupported = rack.gpus[fault.gpu].links.total_mode == "not-supported"
    for v in tray.nvmlDeviceGetFieldValues(h, request):
        expected = pynvml.NVML_SUCCESS
        if unsupported and v.scopeId == ALL_LINKS and v.fieldId in THROUGHPUT_FIELDS:
            expected = pynvml.NVML_ERROR_NOT_SUPPORTED
        assert v.nvmlReturn == expected, (v.fieldId, v.scopeId)
    rack.clock.advance(15)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        tray.nvmlDeviceGetFieldValues(h, request)
