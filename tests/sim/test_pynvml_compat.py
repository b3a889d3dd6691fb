"""A SimTray answers like the real pynvml module: names, signatures, return types, structs and errors."""

from __future__ import annotations

import ctypes
import inspect

import pynvml
import pytest

from collectors.rack import compute_tray_slot
from collectors.sim.tray import NVML_FUNCTIONS, SimTray

ALL_LINKS = 0xFFFFFFFF


def test_every_implemented_function_has_pynvmls_parameters():
    for name in sorted(NVML_FUNCTIONS):
        ours = list(inspect.signature(getattr(SimTray, name).__wrapped__).parameters.values())[1:]
        theirs = list(inspect.signature(getattr(pynvml, name)).parameters.values())
        device_call = theirs and theirs[0].name in ("handle", "device") and name != "nvmlEventSetWait"
        if device_call:
            ours, theirs = ours[1:], theirs[1:]
        assert [(p.name, p.default) for p in ours] == [(p.name, p.default) for p in theirs], name


def test_constants_structs_and_errors_are_the_real_ones(tray):
    assert tray.NVML_CLOCK_SM is pynvml.NVML_CLOCK_SM
    assert tray.NVMLError_GpuIsLost is pynvml.NVMLError_GpuIsLost
    assert tray.c_nvmlPlatformInfo_v2_t is pynvml.c_nvmlPlatformInfo_v2_t
    assert tray.nvmlMemory_v2 == pynvml.nvmlMemory_v2
    with pytest.raises(AttributeError):
        tray.not_a_pynvml_name  # noqa: B018


def test_unimplemented_functions_raise_function_not_found(tray):
    h = tray.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        tray.nvmlDeviceGetGpuFabricInfoV(h, None)


def test_calls_before_init_and_after_shutdown_are_uninitialized(rack):
    tray = rack.trays[0]
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        tray.nvmlDeviceGetCount()
    tray.nvmlInit()
    tray.nvmlInitWithFlags(pynvml.NVML_INIT_FLAG_NO_GPUS)
    h = tray.nvmlDeviceGetHandleByIndex(0)
    tray.nvmlShutdown()
    assert tray.nvmlDeviceGetName(h) == "NVIDIA GB300"  # still one reference
    tray.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        tray.nvmlDeviceGetName(h)
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        tray.nvmlShutdown()


def test_system_calls(tray):
    assert tray.nvmlSystemGetDriverVersion() == "580.173.02"
    assert tray.nvmlSystemGetCudaDriverVersion() == 13000
    assert tray.nvmlDeviceGetCount() == 4
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        tray.nvmlDeviceGetHandleByIndex(4)


def test_handles_are_real_device_pointers_and_foreign_ones_are_rejected(rack, tray):
    h = tray.nvmlDeviceGetHandleByIndex(1)
    assert isinstance(h, pynvml.c_nvmlDevice_t)
    assert tray.nvmlDeviceGetIndex(h) == 1
    assert tray.nvmlDeviceGetHandleByUUID(tray.nvmlDeviceGetUUID(h)).contents is not None
    other = rack.trays[0]
    other.nvmlInit()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        other.nvmlDeviceGetName(h)


def test_identity_matches_the_gb300_capture(rack, tray):
    handles = [tray.nvmlDeviceGetHandleByIndex(i) for i in range(4)]
    bus = [tray.nvmlDeviceGetPciInfo(h) for h in handles]
    assert all(isinstance(b, pynvml.nvmlPciInfo_t) for b in bus)
    assert [b.busId for b in bus] == [f"000000{d}:06:00.0" for d in ("08", "09", "18", "19")]
    assert bus[0].pciDeviceId == 0x31C210DE and bus[0].domain == 8 and bus[0].bus == 6
    serials = [tray.nvmlDeviceGetSerial(h) for h in handles]
    assert serials[0] == serials[1] != serials[2] == serials[3]
    assert all(tray.nvmlDeviceGetName(h) == "NVIDIA GB300" for h in handles)
    assert tray.nvmlDeviceGetCudaComputeCapability(handles[0]) == (10, 3)
    assert tray.nvmlDeviceGetArchitecture(handles[0]) == pynvml.NVML_DEVICE_ARCH_BLACKWELL
    modules = []
    for h in handles:
        info = pynvml.c_nvmlPlatformInfo_v2_t()
        assert tray.nvmlDeviceGetPlatformInfo(h, ctypes.byref(info)) == pynvml.NVML_SUCCESS
        assert ord(info.trayIndex) == 15 and ord(info.slotNumber) == compute_tray_slot(16) == 25
        assert ord(info.hostId) == 1 and info.chassisSerialNumber.startswith("1820")
        modules.append(ord(info.moduleId))
    assert modules == [2, 1, 4, 3]
    uuids = {t.rack.gpus[g].id.uuid for t in rack.trays for g in t.gpu_indices}
    assert len(uuids) == 72 and all(u.startswith("GPU-") and len(u) == 40 for u in uuids)


def test_platform_info_rejects_an_unknown_struct_version(tray):
    info = pynvml.c_nvmlPlatformInfo_v2_t()
    info.version = 7
    with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
        tray.nvmlDeviceGetPlatformInfo(tray.nvmlDeviceGetHandleByIndex(0), ctypes.byref(info))


def test_memory_info_v1_and_v2(tray):
    h = tray.nvmlDeviceGetHandleByIndex(0)
    v2 = tray.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert isinstance(v2, pynvml.c_nvmlMemory_v2_t)
    mib = 1 << 20
    assert v2.total == 284_208 * mib and v2.reserved == 947 * mib
    assert v2.free + v2.used + v2.reserved == v2.total and 0 < v2.used < v2.total
    v1 = tray.nvmlDeviceGetMemoryInfo(h)
    assert isinstance(v1, pynvml.c_nvmlMemory_t) and v1.free + v1.used == v1.total


def test_scalar_readings_have_pynvmls_types_and_gb300_limits(tray):
    h = tray.nvmlDeviceGetHandleByIndex(0)
    assert tray.nvmlDeviceGetPowerManagementLimit(h) == tray.nvmlDeviceGetEnforcedPowerLimit(h) == 1_400_000
    assert tray.nvmlDeviceGetPowerManagementLimitConstraints(h) == [200_000, 1_400_000]
    assert tray.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM) == 2070
    assert tray.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM) == 3996
    assert tray.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM) == 3996
    util = tray.nvmlDeviceGetUtilizationRates(h)
    assert isinstance(util, pynvml.c_nvmlUtilization_t) and 0 <= util.gpu <= 100
    assert isinstance(tray.nvmlDeviceGetPowerUsage(h), int)
    assert isinstance(tray.nvmlDeviceGetTotalEnergyConsumption(h), int)
    temp = tray.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU)
    assert temp == tray.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
    assert tray.nvmlDeviceGetMarginTemperature(h) > 0
    assert tray.nvmlDeviceGetPerformanceState(h) == pynvml.NVML_PSTATE_0
    uncorrected = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    assert tray.nvmlDeviceGetTotalEccErrors(h, uncorrected, pynvml.NVML_VOLATILE_ECC) == 0
    with pytest.raises(pynvml.NVMLError_NotSupported):
        tray.nvmlDeviceGetFanSpeed(h)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        tray.nvmlDeviceGetNvLinkErrorCounter(h, 0, pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        tray.nvmlDeviceGetClockInfo(h, 9)
    with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
        tray.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU, version=1)


def test_nvlink_state_per_link(tray):
    h = tray.nvmlDeviceGetHandleByIndex(0)
    assert [tray.nvmlDeviceGetNvLinkState(h, k) for k in range(18)] == [pynvml.NVML_FEATURE_ENABLED] * 18
    with pytest.raises(pynvml.NVMLError_NotSupported):
        tray.nvmlDeviceGetNvLinkState(h, 18)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        tray.nvmlDeviceGetNvLinkState(h, pynvml.NVML_NVLINK_MAX_LINKS)


def test_field_values_are_real_structs_with_per_entry_returns(clock, tray):
    clock.advance(3)
    h = tray.nvmlDeviceGetHandleByIndex(0)
    request = [
        pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT,
        pynvml.NVML_FI_DEV_MEMORY_TEMP,
        pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
        (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS),
        *[(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, k) for k in range(18)],
        (pynvml.NVML_FI_DEV_NVLINK_GET_SPEED, 4),
        (pynvml.NVML_FI_DEV_NVLINK_GET_STATE, 4),
        (pynvml.NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS, 4),
        (pynvml.NVML_FI_DEV_POWER_INSTANT, 0),
        pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC,
        9999,
        (pynvml.NVML_FI_DEV_NVLINK_GET_STATE, 18),
    ]
    values = tray.nvmlDeviceGetFieldValues(h, request)
    assert isinstance(values[0], pynvml.c_nvmlFieldValue_t) and len(values) == len(request)
    by = list(values)
    assert [v.nvmlReturn for v in by[-3:]] == [
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_INVALID_ARGUMENT,
    ]
    assert all(v.nvmlReturn == pynvml.NVML_SUCCESS for v in by[:-3])
    assert by[0].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT and by[0].value.uiVal == 18
    assert by[2].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    assert by[2].value.ullVal == tray.nvmlDeviceGetTotalEnergyConsumption(h)
    total = by[3].value.ullVal
    per_link = [v.value.ullVal for v in by[4:22]]
    assert abs(sum(per_link) - total) <= 18 and max(per_link) < 1.1 * min(per_link)
    assert by[22].value.uiVal == 53_125 and by[23].value.uiVal == pynvml.NVML_NVLINK_STATE_ACTIVE
    assert by[25].value.uiVal == tray.nvmlDeviceGetPowerUsage(h)
    assert {v.timestamp for v in by} == {int(tray.rack.time * 1_000_000)}
    assert by[3].scopeId == ALL_LINKS and by[7].scopeId == 3


def test_processes_and_names(tray):
    h = tray.nvmlDeviceGetHandleByIndex(2)
    (proc,) = tray.nvmlDeviceGetComputeRunningProcesses(h)
    assert isinstance(proc, pynvml.nvmlFriendlyObject)
    mem = tray.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert proc.usedGpuMemory == mem.used and proc.gpuInstanceId == 0xFFFFFFFF
    assert tray.nvmlSystemGetProcessName(proc.pid) == "VLLM::Worker_TP0"
    with pytest.raises(pynvml.NVMLError_NotFound):
        tray.nvmlSystemGetProcessName(1)
