"""SimTray: one compute tray's NVML, a drop-in for the `pynvml` module over 4 simulated GB300 GPUs.

Functions keep pynvml's names, parameters, return types and exceptions; anything else is forwarded
to the real pynvml module, so constants, structs and NVMLError classes are the real ones. pynvml
functions the simulator does not implement raise NVMLError_FunctionNotFound, as with an older driver.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import pynvml

from collectors.rack import compute_tray_slot, gpu_index
from collectors.sim.events import EventCalls
from collectors.sim.fields import fill, parse_request
from collectors.sim.gpu import (
    MAX_SM_MHZ,
    MAX_VIDEO_MHZ,
    MEM_MHZ,
    MEM_RESERVED_MIB,
    MEM_TOTAL_MIB,
    NAME,
    PCI_DEVICE_ID,
    PCI_SUBSYSTEM_ID,
    POWER_LIMIT_MW,
    POWER_MIN_LIMIT_MW,
    GpuSim,
)
from collectors.sim.link_calls import LinkCalls
from collectors.sim.nvml_base import NOT_MIG, NVML_FUNCTIONS, nvml_call

DRIVER_VERSION = "580.173.02"
CUDA_DRIVER_VERSION = 13000
MIB = 1 << 20
__all__ = ["NVML_FUNCTIONS", "SimTray"]


class SimTray(EventCalls, LinkCalls):
    """The NVML of one compute tray (4 GPUs) of a SimRack; use it wherever the `pynvml` module goes."""

    mem_total_mib = MEM_TOTAL_MIB
    mem_reserved_mib = MEM_RESERVED_MIB
    power_limit_mw = POWER_LIMIT_MW
    power_min_limit_mw = POWER_MIN_LIMIT_MW
    """The GPU model's fixed facts; a host of another model (collectors.sim.hgx) sets its own."""

    def _used_mib(self, gpu: GpuSim) -> int:
        """Memory in use as this model reports it (the simulated GPU's own figure on a GB300)."""
        return gpu.mem_used_mib

    def _power_mw(self, gpu: GpuSim) -> int:
        """Power as this model reports it (the simulated GPU's own figure on a GB300)."""
        return gpu.power_mw

    def _sibling(self, gpu: GpuSim) -> GpuSim:
        # Modules 1+2 and 3+4 share a Grace (one superchip).
        partner = gpu.id.module + (1 if gpu.id.module % 2 else -1)
        return self.rack.gpus[gpu_index(gpu.id.tray, partner)]

    # -- lifecycle and system -----------------------------------------------------------------------

    @nvml_call("system")
    def nvmlInitWithFlags(self, flags: int) -> None:
        """Start (ref-counted) NVML on this tray."""
        self._refcount += 1

    @nvml_call("system")
    def nvmlInit(self) -> None:
        """nvmlInitWithFlags(0)."""
        self._refcount += 1

    @nvml_call("system")
    def nvmlShutdown(self) -> None:
        """Drop one reference."""
        self._refcount -= 1

    @nvml_call("system")
    def nvmlSystemGetDriverVersion(self) -> str:
        """'580.173.02'."""
        return DRIVER_VERSION

    @nvml_call("system")
    def nvmlSystemGetCudaDriverVersion(self) -> int:
        """13000 (CUDA 13.0)."""
        return CUDA_DRIVER_VERSION

    @nvml_call("system")
    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        """13000 (CUDA 13.0)."""
        return CUDA_DRIVER_VERSION

    @nvml_call("system")
    def nvmlDeviceGetCount(self) -> int:
        """4 GPUs per tray."""
        return len(self.gpu_indices)

    @nvml_call("system")
    def nvmlDeviceGetHandleByIndex(self, index: int) -> pynvml.c_nvmlDevice_t:
        """A real c_nvmlDevice_t; GPU_IS_LOST for a GPU that fell off the bus."""
        if not 0 <= index < len(self.gpu_indices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handle(index)

    @nvml_call("system")
    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> pynvml.c_nvmlDevice_t:
        """The handle of the GPU with this UUID; NOT_FOUND when it is not on this tray."""
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for device, g in enumerate(self.gpu_indices):
            if self.rack.gpus[g].id.uuid == text:
                return self._handle(device)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    @nvml_call("system")
    def nvmlSystemGetProcessName(self, pid: int) -> str:
        """The name of a GPU process on this tray; NOT_FOUND otherwise."""
        for g in self.gpu_indices:
            gpu = self.rack.gpus[g]
            if pid == _pid(gpu):
                return self._process_name(gpu)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    # -- identity -----------------------------------------------------------------------------------

    @nvml_call("device")
    def nvmlDeviceGetIndex(self, gpu: GpuSim) -> int:
        """NVML device index 0..3."""
        return self.gpu_indices.index(gpu.id.index)

    @nvml_call("device")
    def nvmlDeviceGetMinorNumber(self, gpu: GpuSim) -> int:
        """/dev/nvidiaN."""
        return self.gpu_indices.index(gpu.id.index)

    @nvml_call("device")
    def nvmlDeviceGetUUID(self, gpu: GpuSim) -> str:
        """'GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx', unique across the rack."""
        return gpu.id.uuid

    @nvml_call("device")
    def nvmlDeviceGetName(self, gpu: GpuSim) -> str:
        """'NVIDIA GB300'."""
        return NAME

    @nvml_call("device")
    def nvmlDeviceGetSerial(self, gpu: GpuSim) -> str:
        """The superchip's serial (shared by two GPUs)."""
        return gpu.id.serial

    @nvml_call("device")
    def nvmlDeviceGetPciInfo(self, gpu: GpuSim) -> pynvml.nvmlPciInfo_t:
        """A real nvmlPciInfo_t (domain 0x8/0x9/0x18/0x19, bus 6)."""
        info = pynvml.nvmlPciInfo_t()
        info.domain = gpu.id.pci_domain
        info.bus = 6
        info.device = 0
        info.pciDeviceId = PCI_DEVICE_ID
        info.pciSubSystemId = PCI_SUBSYSTEM_ID
        info.busId = gpu.id.bus_id.encode()
        info.busIdLegacy = f"{gpu.id.pci_domain:04X}:06:00.0".encode()
        return info

    @nvml_call("device")
    def nvmlDeviceGetPlatformInfo(self, gpu: GpuSim, platformInfo: Any) -> int:
        """Fill a c_nvmlPlatformInfo_v2_t (or _v1_t), by ctypes.byref or as is; returns NVML_SUCCESS."""
        info = getattr(platformInfo, "_obj", platformInfo)
        if isinstance(info, ctypes._Pointer):
            info = info.contents
        slot = bytes([compute_tray_slot(self.tray)])
        if isinstance(info, pynvml.c_nvmlPlatformInfo_v2_t) and info.version == pynvml.nvmlPlatformInfo_v2:
            info.chassisSerialNumber = gpu.id.chassis_serial.encode()
            info.slotNumber = slot
            info.trayIndex = bytes([self.tray_index])
            info.hostId = bytes([1])
            info.peerType = bytes([1])  # "Switch Connected" (the capture), 1 as NVIDIA's mock encodes it
            info.moduleId = bytes([gpu.id.module])
        elif isinstance(info, pynvml.c_nvmlPlatformInfo_v1_t) and info.version == pynvml.nvmlPlatformInfo_v1:
            info.chassisPhysicalSlotNumber = slot
            info.computeSlotIndex = bytes([self.tray_index])
            info.nodeIndex = bytes([1])
            info.moduleId = bytes([gpu.id.module])
        else:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        info.ibGuid = gpu.id.uuid[4:20].encode()
        return pynvml.NVML_SUCCESS

    @nvml_call("device")
    def nvmlDeviceGetCudaComputeCapability(self, gpu: GpuSim) -> tuple[int, int]:
        """(10, 3): sm_103."""
        return (10, 3)

    @nvml_call("device")
    def nvmlDeviceGetArchitecture(self, gpu: GpuSim) -> int:
        """NVML_DEVICE_ARCH_BLACKWELL."""
        return pynvml.NVML_DEVICE_ARCH_BLACKWELL

    @nvml_call("device")
    def nvmlDeviceGetPersistenceMode(self, gpu: GpuSim) -> int:
        """Enabled, as on racks."""
        return pynvml.NVML_FEATURE_ENABLED

    # -- memory, power, clocks, temperatures --------------------------------------------------------

    @nvml_call("device")
    def nvmlDeviceGetMemoryInfo(self, gpu: GpuSim, version: int | None = None) -> Any:
        """Bytes; v2 (with .reserved) when version=nvmlMemory_v2, else the v1 struct."""
        used = self._used_mib(gpu) * MIB
        total = self.mem_total_mib * MIB
        reserved = self.mem_reserved_mib * MIB
        if not version:
            return pynvml.c_nvmlMemory_t(total=total, free=total - reserved - used, used=used + reserved)
        if version != pynvml.nvmlMemory_v2:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return pynvml.c_nvmlMemory_v2_t(
            version=version, total=total, reserved=reserved, free=total - reserved - used, used=used
        )

    @nvml_call("device")
    def nvmlDeviceGetPowerManagementLimit(self, gpu: GpuSim) -> int:
        """The model's limit (1,400,000 mW on a GB300)."""
        return self.power_limit_mw

    @nvml_call("device")
    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: GpuSim) -> int:
        """The model's limit (1,400,000 mW on a GB300)."""
        return self.power_limit_mw

    @nvml_call("device")
    def nvmlDeviceGetPowerManagementDefaultLimit(self, gpu: GpuSim) -> int:
        """The model's limit (1,400,000 mW on a GB300)."""
        return self.power_limit_mw

    @nvml_call("device")
    def nvmlDeviceGetPowerManagementLimitConstraints(self, gpu: GpuSim) -> list[int]:
        """[min, max] mW ([200,000, 1,400,000] on a GB300)."""
        return [self.power_min_limit_mw, self.power_limit_mw]

    @nvml_call("device")
    def nvmlDeviceGetPowerUsage(self, gpu: GpuSim) -> int:
        """mW, 1-s average."""
        return self._power_mw(gpu)

    @nvml_call("device")
    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: GpuSim) -> int:
        """mJ since driver load (monotonic)."""
        return int(gpu.energy_mj)

    @nvml_call("device")
    def nvmlDeviceGetMaxClockInfo(self, gpu: GpuSim, type: int) -> int:
        """MHz: graphics/SM 2070, memory 3996, video 1912."""
        return _by_clock_type(type, MAX_SM_MHZ, MEM_MHZ, MAX_VIDEO_MHZ)

    @nvml_call("device")
    def nvmlDeviceGetClockInfo(self, gpu: GpuSim, type: int) -> int:
        """Current MHz."""
        return _by_clock_type(type, gpu.sm_mhz, MEM_MHZ, gpu.video_mhz)

    @nvml_call("device")
    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: GpuSim) -> int:
        """nvmlClocksEventReason* bitmask of why clocks are below max."""
        return gpu.reasons

    @nvml_call("device")
    def nvmlDeviceGetSupportedClocksEventReasons(self, gpu: GpuSim) -> int:
        """Every reason this simulator can raise."""
        return pynvml.nvmlClocksEventReasonAll

    @nvml_call("device")
    def nvmlDeviceGetPerformanceState(self, gpu: GpuSim) -> int:
        """P0, even at idle."""
        return pynvml.NVML_PSTATE_0

    @nvml_call("device")
    def nvmlDeviceGetUtilizationRates(self, gpu: GpuSim) -> pynvml.c_nvmlUtilization_t:
        """% of the last sample period with a kernel running / memory busy."""
        return pynvml.c_nvmlUtilization_t(gpu=gpu.util_gpu, memory=gpu.util_mem)

    @nvml_call("device")
    def nvmlDeviceGetTemperatureV(
        self, gpu: GpuSim, sensor: int, version: int = pynvml.nvmlTemperature_v1
    ) -> int:
        """GPU temperature, C."""
        if version != pynvml.nvmlTemperature_v1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return _gpu_sensor(gpu, sensor)

    @nvml_call("device")
    def nvmlDeviceGetTemperature(self, gpu: GpuSim, sensor: int) -> int:
        """Deprecated form of nvmlDeviceGetTemperatureV."""
        return _gpu_sensor(gpu, sensor)

    @nvml_call("device")
    def nvmlDeviceGetMarginTemperature(self, gpu: GpuSim) -> int:
        """C left before thermal slowdown (T.Limit)."""
        return gpu.margin

    @nvml_call("device")
    def nvmlDeviceGetTotalEccErrors(self, gpu: GpuSim, errorType: int, counterType: int) -> int:
        """Corrected/uncorrected, volatile/aggregate ECC error counts."""
        if errorType not in (0, 1) or counterType not in (0, 1):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.ecc_count(
            uncorrected=errorType == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
            aggregate=counterType == pynvml.NVML_AGGREGATE_ECC,
        )

    @nvml_call("device")
    def nvmlDeviceGetEccMode(self, gpu: GpuSim) -> list[int]:
        """[current, pending]: enabled."""
        return [pynvml.NVML_FEATURE_ENABLED, pynvml.NVML_FEATURE_ENABLED]

    @nvml_call("device")
    def nvmlDeviceGetFanSpeed(self, gpu: GpuSim) -> int:
        """Liquid cooled: NOT_SUPPORTED."""
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    @nvml_call("device")
    def nvmlDeviceGetNumFans(self, gpu: GpuSim) -> int:
        """Liquid cooled: no fans."""
        return 0

    # -- field values -------------------------------------------------------------------------------

    @nvml_call("device")
    def nvmlDeviceGetFieldValues(self, gpu: GpuSim, fieldIds: Sequence[Any]) -> Any:
        """A ctypes array of real c_nvmlFieldValue_t, one per request, each with its own nvmlReturn."""
        request = parse_request(fieldIds)
        device = self.gpu_indices.index(gpu.id.index)
        # Only ids with injections can be forced; _take on the rest would answer None anyway.
        forced = {
            fid: self._take(self._field_errors[fid], device)
            for fid in request.field_ids & self._field_errors.keys()
        }
        ts_us = int(self.rack.time * 1_000_000)
        return fill(request, gpu, self._sibling(gpu), ts_us, forced)

    # -- processes ----------------------------------------------------------------------------------

    def _process_name(self, gpu: GpuSim) -> str:
        inst = self.rack.workload.instances[self.rack.workload.instance_of_gpu[gpu.id.index]]
        rank = inst.gpus.index(gpu.id.index)
        names = {"vllm": "VLLM::Worker_TP{r}", "sglang": "sglang::scheduler_TP{r}"}
        return names.get(inst.engine, "trtllm-serve rank {r}").format(r=rank)

    @nvml_call("device")
    def nvmlDeviceGetComputeRunningProcesses(self, gpu: GpuSim) -> list[Any]:
        """The serving worker on this GPU, as pynvml's friendly objects (pid, usedGpuMemory bytes, ...)."""
        if gpu.mem_used_mib == 0:
            return []
        info = pynvml.c_nvmlProcessInfo_v2_t(
            pid=_pid(gpu),
            usedGpuMemory=self._used_mib(gpu) * MIB,
            gpuInstanceId=NOT_MIG,
            computeInstanceId=NOT_MIG,
        )
        return [pynvml.nvmlStructToFriendlyObject(info)]

    @nvml_call("device")
    def nvmlDeviceGetGraphicsRunningProcesses(self, gpu: GpuSim) -> list[Any]:
        """No graphics work on a compute tray."""
        return []


def _pid(gpu: GpuSim) -> int:
    # Unique across the rack so a process table keyed by pid never collides between trays.
    return 41_000 + gpu.id.index


def _by_clock_type(clock_type: int, sm: int, mem: int, video: int) -> int:
    if clock_type in (pynvml.NVML_CLOCK_GRAPHICS, pynvml.NVML_CLOCK_SM):
        return sm
    if clock_type == pynvml.NVML_CLOCK_MEM:
        return mem
    if clock_type == pynvml.NVML_CLOCK_VIDEO:
        return video
    raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)


def _gpu_sensor(gpu: GpuSim, sensor: int) -> int:
    if sensor != pynvml.NVML_TEMPERATURE_GPU:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    return gpu.temp
