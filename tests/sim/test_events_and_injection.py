"""Event sets (XIDs through nvmlEventSetWait) and the error-injection test hooks."""

from __future__ import annotations

import ctypes
import threading

import pynvml
import pytest

from collectors.clock import SimClock
from collectors.sim import SimRack

from .conftest import T0


def lost_rack() -> SimRack:
    return SimRack(seed=4, scenario="gpu-lost", clock=SimClock(T0), fault_at=10)


def open_set(rack: SimRack) -> tuple:
    tray = rack.tray_of(rack.scenario.fault.tray)
    tray.nvmlInit()
    es = tray.nvmlEventSetCreate()
    assert isinstance(es, pynvml.c_nvmlEventSet_t)
    handles = [tray.nvmlDeviceGetHandleByIndex(i) for i in range(4)]
    for h in handles:
        tray.nvmlDeviceRegisterEvents(h, pynvml.nvmlEventTypeXidCriticalError, es)
    return tray, es, handles


def test_wait_with_nothing_pending_times_out_at_once(rack, tray):
    es = tray.nvmlEventSetCreate()
    tray.nvmlDeviceRegisterEvents(tray.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlEventTypeAll, es)
    with pytest.raises(pynvml.NVMLError_Timeout):
        tray.nvmlEventSetWait(es, 0)
    tray.nvmlEventSetFree(es)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        tray.nvmlEventSetWait(es, 0)


def test_xid_79_is_delivered_once_as_a_real_event_struct():
    rack = lost_rack()
    tray, es, handles = open_set(rack)
    fault = rack.scenario.fault
    rack.clock.advance(15)
    data = tray.nvmlEventSetWait(es, 0)
    assert isinstance(data, pynvml.c_nvmlEventData_t)
    assert data.eventType == pynvml.nvmlEventTypeXidCriticalError and data.eventData == 79
    assert data.gpuInstanceId == data.computeInstanceId == 0xFFFFFFFF
    device = rack.gpus[fault.gpu].id.device
    assert (
        ctypes.cast(data.device, ctypes.c_void_p).value == ctypes.cast(handles[device], ctypes.c_void_p).value
    )
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        tray.nvmlDeviceGetUUID(data.device)
    with pytest.raises(pynvml.NVMLError_Timeout):
        tray.nvmlEventSetWait(es, 0)


def test_events_before_registration_are_not_recorded():
    early, late = (SimRack(seed=4, scenario="nvlink-flap", clock=SimClock(T0), fault_at=5) for _ in range(2))
    late.clock.advance(60)  # the link goes down (XID 74) at T0 + 50
    late.sync()
    early_tray, early_set, _ = open_set(early)
    late_tray, late_set, _ = open_set(late)
    early.clock.advance(60)
    assert early_tray.nvmlEventSetWait(early_set, 0).eventData == 74
    with pytest.raises(pynvml.NVMLError_Timeout):
        late_tray.nvmlEventSetWait(late_set, 0)


def test_a_waiter_wakes_when_another_thread_advances_the_rack():
    rack = lost_rack()
    tray, es, _ = open_set(rack)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(tray.nvmlEventSetWait(es, 60_000).eventData))
    waiter.start()
    rack.clock.advance(15)
    rack.sync()
    waiter.join(timeout=60)
    assert got == [79]


def test_registering_unsupported_types_only_is_not_supported(tray):
    es = tray.nvmlEventSetCreate()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        tray.nvmlDeviceRegisterEvents(tray.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlEventTypePState, es)


def test_inject_error_per_device_and_times(tray):
    h0, h1 = tray.nvmlDeviceGetHandleByIndex(0), tray.nvmlDeviceGetHandleByIndex(1)
    tray.inject_error("nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_UNKNOWN, gpu=1, times=2)
    assert tray.nvmlDeviceGetPowerUsage(h0) > 0
    for _ in range(2):
        with pytest.raises(pynvml.NVMLError_Unknown):
            tray.nvmlDeviceGetPowerUsage(h1)
    assert tray.nvmlDeviceGetPowerUsage(h1) > 0


def test_inject_error_until_cleared_and_on_system_calls(tray):
    h = tray.nvmlDeviceGetHandleByIndex(2)
    tray.inject_error("nvmlDeviceGetHandleByIndex", pynvml.NVML_ERROR_GPU_IS_LOST, gpu=3)
    tray.inject_error("nvmlSystemGetDriverVersion", pynvml.NVML_ERROR_NO_PERMISSION)
    tray.inject_error("nvmlDeviceGetUUID", pynvml.NVML_ERROR_GPU_IS_LOST)
    for _ in range(3):
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            tray.nvmlDeviceGetHandleByIndex(3)
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            tray.nvmlDeviceGetUUID(h)
        with pytest.raises(pynvml.NVMLError_NoPermission):
            tray.nvmlSystemGetDriverVersion()
    tray.nvmlDeviceGetHandleByIndex(2)
    tray.clear_errors()
    assert tray.nvmlDeviceGetUUID(h).startswith("GPU-")
    with pytest.raises(ValueError, match="nvmlDeviceGetPowerUsge"):
        tray.inject_error("nvmlDeviceGetPowerUsge", 3)


def test_inject_error_on_init(rack):
    tray = rack.trays[3]
    tray.inject_error("nvmlInit", pynvml.NVML_ERROR_DRIVER_NOT_LOADED, times=1)
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        tray.nvmlInit()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        tray.nvmlDeviceGetCount()
    tray.nvmlInit()
    assert tray.nvmlDeviceGetCount() == 4


def test_inject_field_error_per_entry(tray):
    h0, h1 = tray.nvmlDeviceGetHandleByIndex(0), tray.nvmlDeviceGetHandleByIndex(1)
    energy = pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION
    state = pynvml.NVML_FI_DEV_NVLINK_GET_STATE
    tray.inject_field_error(state, pynvml.NVML_ERROR_NOT_READY, gpu=0, times=1)
    request = [energy, *[(state, k) for k in range(18)]]
    first = tray.nvmlDeviceGetFieldValues(h0, request)
    assert first[0].nvmlReturn == pynvml.NVML_SUCCESS
    assert {v.nvmlReturn for v in first[1:]} == {pynvml.NVML_ERROR_NOT_READY}
    assert {v.nvmlReturn for v in tray.nvmlDeviceGetFieldValues(h1, request)} == {pynvml.NVML_SUCCESS}
    assert {v.nvmlReturn for v in tray.nvmlDeviceGetFieldValues(h0, request)} == {pynvml.NVML_SUCCESS}
