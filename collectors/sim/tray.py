"""SimTray: one compute tray's NVML, a drop-in for the `pynvml` module over 4 simulated GB300 GPUs.

Functions keep pynvml's names, parameters, return types and exceptions; anything else is forwarded
to the real pynvml module, so constants, structs and NVMLError classes are the real ones. pynvml
functions the simulator does not implement raise NVMLError_FunctionNotFound, as with an older driver.
"""

from __future__ import annotations

import ctypes
import functools
import inspect
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pynvml

from collectors.rack import GPUS_PER_TRAY, LINKS_PER_GPU, compute_tray_slot, gpu_index
from collectors.sim import fields
from collectors.sim.events import NOT_MIG, SUPPORTED_EVENT_TYPES, EventSet, address, new_event_set
from collectors.sim.gpu import (
    MAX_SM_MHZ,
    MAX_VIDEO_MHZ,
    MEM_MHZ,
    MEM_RESERVED_MIB,
    MEM_TOTAL_MIB,
    MODULE_BY_DEVICE,
    NAME,
    PCI_DEVICE_ID,
    PCI_SUBSYSTEM_ID,
    POWER_LIMIT_MW,
    POWER_MIN_LIMIT_MW,
    GpuSim,
)

if TYPE_CHECKING:
    from collectors.sim.rack import SimRack

DRIVER_VERSION = "580.173.02"
CUDA_DRIVER_VERSION = 13000
MIB = 1 << 20
_PURE_HELPERS = frozenset({"nvmlExceptionClass", "nvmlStructToFriendlyObject", "nvmlFriendlyObjectToStruct"})

F = TypeVar("F", bound=Callable[..., Any])
NVML_FUNCTIONS: set[str] = set()
"""Names of the pynvml functions a SimTray implements."""


@dataclass
class _Injection:
    code: int
    gpu: int | None
    times: int | None


def _nvml(kind: str) -> Callable[[F], F]:
    """Wrap a pynvml-named method: init check, injected errors, rack sync, handle -> GpuSim, lost GPUs.

    kind "device": the first argument is a device handle and the method receives the GpuSim instead.
    kind "system": no device; the method is called as is.
    """

    def decorate(fn: F) -> F:
        name = fn.__name__
        NVML_FUNCTIONS.add(name)
        first = next(iter(inspect.signature(getattr(pynvml, name)).parameters), None)

        @functools.wraps(fn)
        def wrapper(self: SimTray, *args: Any, **kwargs: Any) -> Any:
            with self.rack.lock:
                if name not in ("nvmlInit", "nvmlInitWithFlags") and self._refcount == 0:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
                if kind == "system":
                    # nvmlDeviceGetHandleByIndex names its device by index: injections can target it.
                    index = args[0] if name == "nvmlDeviceGetHandleByIndex" and args else None
                    self._raise_injected(name, index if isinstance(index, int) else None)
                    self.rack.sync()
                    return fn(self, *args, **kwargs)
                if args:
                    handle, rest = args[0], args[1:]
                else:
                    handle, rest = kwargs.pop(first), ()
                device = self._device_of(handle)
                self._raise_injected(name, device)
                self.rack.sync()
                gpu = self.rack.gpus[self.gpu_indices[device]]
                if gpu.lost:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
                return fn(self, gpu, *rest, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _not_found(name: str) -> Callable[..., Any]:
    def missing(*args: Any, **kwargs: Any) -> Any:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    missing.__name__ = name
    return missing


class SimTray:
    """The NVML of one compute tray (4 GPUs) of a SimRack; use it wherever the `pynvml` module goes."""

    def __init__(self, rack: SimRack, tray: int) -> None:
        """Tray 1..18 of `rack` (NVML trayIndex = tray - 1)."""
        self.rack = rack
        self.tray = tray
        self.tray_index = tray - 1
        self.gpu_indices = [gpu_index(tray, module) for module in MODULE_BY_DEVICE]
        """Rack GPU index of NVML device index 0..3."""
        self._refcount = 0
        self._buffers = [ctypes.create_string_buffer(8) for _ in range(GPUS_PER_TRAY)]
        self._handles = [ctypes.cast(b, pynvml.c_nvmlDevice_t) for b in self._buffers]
        self._device_by_address = {ctypes.addressof(b): i for i, b in enumerate(self._buffers)}
        self._event_sets: dict[int, EventSet] = {}
        self._errors: dict[str, list[_Injection]] = {}
        self._field_errors: dict[int, list[_Injection]] = {}

    def __getattr__(self, name: str) -> Any:
        """Forward constants, structs and exception classes to the real pynvml."""
        value = getattr(pynvml, name)
        if name.startswith("nvml") and isinstance(value, types.FunctionType) and name not in _PURE_HELPERS:
            return _not_found(name)
        return value

    def __repr__(self) -> str:
        """SimTray(tray=16)."""
        return f"SimTray(tray={self.tray})"

    # -- test hooks ---------------------------------------------------------------------------------

    def inject_error(
        self, function_name: str, code: int, *, gpu: int | None = None, times: int | None = None
    ) -> None:
        """Make `function_name` raise pynvml.NVMLError(code) for device index `gpu` (None: any call).

        Applies to the next `times` matching calls, or until clear_errors() when times is None. Calls
        without a device (nvmlInit, nvmlEventSetWait, ...) match only gpu=None.
        """
        if function_name not in NVML_FUNCTIONS:
            raise ValueError(f"{function_name!r} is not an NVML function the simulated tray implements")
        with self.rack.lock:
            self._errors.setdefault(function_name, []).append(_Injection(code, gpu, times))

    def inject_field_error(
        self, field_id: int, code: int, gpu: int | None = None, times: int | None = None
    ) -> None:
        """Make nvmlDeviceGetFieldValues answer `code` in every entry for `field_id` (next `times` calls)."""
        with self.rack.lock:
            self._field_errors.setdefault(field_id, []).append(_Injection(code, gpu, times))

    def clear_errors(self) -> None:
        """Remove every injected error."""
        with self.rack.lock:
            self._errors.clear()
            self._field_errors.clear()

    @staticmethod
    def _take(injections: list[_Injection] | None, device: int | None) -> int | None:
        for inj in injections or ():
            if inj.gpu is None or inj.gpu == device:
                if inj.times is not None:
                    inj.times -= 1
                    if inj.times <= 0:
                        injections.remove(inj)  # type: ignore[union-attr]
                return inj.code
        return None

    def _raise_injected(self, name: str, device: int | None) -> None:
        code = self._take(self._errors.get(name), device)
        if code is not None:
            raise pynvml.NVMLError(code)

    def _device_of(self, handle: object) -> int:
        device = self._device_by_address.get(address(handle) or 0)
        if device is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return device

    def _sibling(self, gpu: GpuSim) -> GpuSim:
        # Modules 1+2 and 3+4 share a Grace (one superchip).
        partner = gpu.id.module + (1 if gpu.id.module % 2 else -1)
        return self.rack.gpus[gpu_index(self.tray, partner)]

    # -- lifecycle and system -----------------------------------------------------------------------

    @_nvml("system")
    def nvmlInitWithFlags(self, flags: int) -> None:
        """Start (ref-counted) NVML on this tray."""
        self._refcount += 1

    @_nvml("system")
    def nvmlInit(self) -> None:
        """nvmlInitWithFlags(0)."""
        self._refcount += 1

    @_nvml("system")
    def nvmlShutdown(self) -> None:
        """Drop one reference."""
        self._refcount -= 1

    @_nvml("system")
    def nvmlSystemGetDriverVersion(self) -> str:
        """'580.173.02'."""
        return DRIVER_VERSION

    @_nvml("system")
    def nvmlSystemGetCudaDriverVersion(self) -> int:
        """13000 (CUDA 13.0)."""
        return CUDA_DRIVER_VERSION

    @_nvml("system")
    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        """13000 (CUDA 13.0)."""
        return CUDA_DRIVER_VERSION

    @_nvml("system")
    def nvmlDeviceGetCount(self) -> int:
        """4 GPUs per tray."""
        return GPUS_PER_TRAY

    @_nvml("system")
    def nvmlDeviceGetHandleByIndex(self, index: int) -> pynvml.c_nvmlDevice_t:
        """A real c_nvmlDevice_t; GPU_IS_LOST for a GPU that fell off the bus."""
        if not 0 <= index < GPUS_PER_TRAY:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handle(index)

    def _handle(self, index: int) -> pynvml.c_nvmlDevice_t:
        if self.rack.gpus[self.gpu_indices[index]].lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return self._handles[index]

    @_nvml("system")
    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> pynvml.c_nvmlDevice_t:
        """The handle of the GPU with this UUID; NOT_FOUND when it is not on this tray."""
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for device, g in enumerate(self.gpu_indices):
            if self.rack.gpus[g].id.uuid == text:
                return self._handle(device)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    @_nvml("system")
    def nvmlSystemGetProcessName(self, pid: int) -> str:
        """The name of a GPU process on this tray; NOT_FOUND otherwise."""
        for g in self.gpu_indices:
            gpu = self.rack.gpus[g]
            if pid == _pid(gpu):
                return self._process_name(gpu)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    # -- identity -----------------------------------------------------------------------------------

    @_nvml("device")
    def nvmlDeviceGetIndex(self, gpu: GpuSim) -> int:
        """NVML device index 0..3."""
        return gpu.id.device

    @_nvml("device")
    def nvmlDeviceGetMinorNumber(self, gpu: GpuSim) -> int:
        """/dev/nvidiaN."""
        return gpu.id.device

    @_nvml("device")
    def nvmlDeviceGetUUID(self, gpu: GpuSim) -> str:
        """'GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx', unique across the rack."""
        return gpu.id.uuid

    @_nvml("device")
    def nvmlDeviceGetName(self, gpu: GpuSim) -> str:
        """'NVIDIA GB300'."""
        return NAME

    @_nvml("device")
    def nvmlDeviceGetSerial(self, gpu: GpuSim) -> str:
        """The superchip's serial (shared by two GPUs)."""
        return gpu.id.serial

    @_nvml("device")
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

    @_nvml("device")
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

    @_nvml("device")
    def nvmlDeviceGetCudaComputeCapability(self, gpu: GpuSim) -> tuple[int, int]:
        """(10, 3): sm_103."""
        return (10, 3)

    @_nvml("device")
    def nvmlDeviceGetArchitecture(self, gpu: GpuSim) -> int:
        """NVML_DEVICE_ARCH_BLACKWELL."""
        return pynvml.NVML_DEVICE_ARCH_BLACKWELL

    @_nvml("device")
    def nvmlDeviceGetPersistenceMode(self, gpu: GpuSim) -> int:
        """Enabled, as on racks."""
        return pynvml.NVML_FEATURE_ENABLED

    # -- memory, power, clocks, temperatures --------------------------------------------------------

    @_nvml("device")
    def nvmlDeviceGetMemoryInfo(self, gpu: GpuSim, version: int | None = None) -> Any:
        """Bytes; v2 (with .reserved) when version=nvmlMemory_v2, else the v1 struct."""
        used = gpu.mem_used_mib * MIB
        total = MEM_TOTAL_MIB * MIB
        reserved = MEM_RESERVED_MIB * MIB
        if not version:
            return pynvml.c_nvmlMemory_t(total=total, free=total - reserved - used, used=used + reserved)
        if version != pynvml.nvmlMemory_v2:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return pynvml.c_nvmlMemory_v2_t(
            version=version, total=total, reserved=reserved, free=total - reserved - used, used=used
        )

    @_nvml("device")
    def nvmlDeviceGetPowerManagementLimit(self, gpu: GpuSim) -> int:
        """1,400,000 mW."""
        return POWER_LIMIT_MW

    @_nvml("device")
    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: GpuSim) -> int:
        """1,400,000 mW."""
        return POWER_LIMIT_MW

    @_nvml("device")
    def nvmlDeviceGetPowerManagementDefaultLimit(self, gpu: GpuSim) -> int:
        """1,400,000 mW."""
        return POWER_LIMIT_MW

    @_nvml("device")
    def nvmlDeviceGetPowerManagementLimitConstraints(self, gpu: GpuSim) -> list[int]:
        """[200,000, 1,400,000] mW."""
        return [POWER_MIN_LIMIT_MW, POWER_LIMIT_MW]

    @_nvml("device")
    def nvmlDeviceGetPowerUsage(self, gpu: GpuSim) -> int:
        """mW, 1-s average."""
        return gpu.power_mw

    @_nvml("device")
    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: GpuSim) -> int:
        """mJ since driver load (monotonic)."""
        return int(gpu.energy_mj)

    @_nvml("device")
    def nvmlDeviceGetMaxClockInfo(self, gpu: GpuSim, type: int) -> int:
        """MHz: graphics/SM 2070, memory 3996, video 1912."""
        return _by_clock_type(type, MAX_SM_MHZ, MEM_MHZ, MAX_VIDEO_MHZ)

    @_nvml("device")
    def nvmlDeviceGetClockInfo(self, gpu: GpuSim, type: int) -> int:
        """Current MHz."""
        return _by_clock_type(type, gpu.sm_mhz, MEM_MHZ, gpu.video_mhz)

    @_nvml("device")
    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: GpuSim) -> int:
        """nvmlClocksEventReason* bitmask of why clocks are below max."""
        return gpu.reasons

    @_nvml("device")
    def nvmlDeviceGetSupportedClocksEventReasons(self, gpu: GpuSim) -> int:
        """Every reason this simulator can raise."""
        return pynvml.nvmlClocksEventReasonAll

    @_nvml("device")
    def nvmlDeviceGetPerformanceState(self, gpu: GpuSim) -> int:
        """P0, even at idle."""
        return pynvml.NVML_PSTATE_0

    @_nvml("device")
    def nvmlDeviceGetUtilizationRates(self, gpu: GpuSim) -> pynvml.c_nvmlUtilization_t:
        """% of the last sample period with a kernel running / memory busy."""
        return pynvml.c_nvmlUtilization_t(gpu=gpu.util_gpu, memory=gpu.util_mem)

    @_nvml("device")
    def nvmlDeviceGetTemperatureV(
        self, gpu: GpuSim, sensor: int, version: int = pynvml.nvmlTemperature_v1
    ) -> int:
        """GPU temperature, C."""
        if version != pynvml.nvmlTemperature_v1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return _gpu_sensor(gpu, sensor)

    @_nvml("device")
    def nvmlDeviceGetTemperature(self, gpu: GpuSim, sensor: int) -> int:
        """Deprecated form of nvmlDeviceGetTemperatureV."""
        return _gpu_sensor(gpu, sensor)

    @_nvml("device")
    def nvmlDeviceGetMarginTemperature(self, gpu: GpuSim) -> int:
        """C left before thermal slowdown (T.Limit)."""
        return gpu.margin

    @_nvml("device")
    def nvmlDeviceGetTotalEccErrors(self, gpu: GpuSim, errorType: int, counterType: int) -> int:
        """Corrected/uncorrected, volatile/aggregate ECC error counts."""
        if errorType not in (0, 1) or counterType not in (0, 1):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if errorType == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
            return gpu.ecc_uncorrected
        base = gpu.ecc_aggregate_base if counterType == pynvml.NVML_AGGREGATE_ECC else 0
        return base + gpu.ecc_corrected

    @_nvml("device")
    def nvmlDeviceGetEccMode(self, gpu: GpuSim) -> list[int]:
        """[current, pending]: enabled."""
        return [pynvml.NVML_FEATURE_ENABLED, pynvml.NVML_FEATURE_ENABLED]

    @_nvml("device")
    def nvmlDeviceGetFanSpeed(self, gpu: GpuSim) -> int:
        """Liquid cooled: NOT_SUPPORTED."""
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    @_nvml("device")
    def nvmlDeviceGetNumFans(self, gpu: GpuSim) -> int:
        """Liquid cooled: no fans."""
        return 0

    # -- NVLink -------------------------------------------------------------------------------------

    @_nvml("device")
    def nvmlDeviceGetNvLinkState(self, gpu: GpuSim, link: int) -> int:
        """NVML_FEATURE_ENABLED while the link is active."""
        return pynvml.NVML_FEATURE_ENABLED if gpu.links.active[_link(link)] else pynvml.NVML_FEATURE_DISABLED

    @_nvml("device")
    def nvmlDeviceGetNvLinkVersion(self, gpu: GpuSim, link: int) -> int:
        """NVML_NVLINK_VERSION_5_0 (7)."""
        _link(link)
        return pynvml.NVML_NVLINK_VERSION_5_0

    @_nvml("device")
    def nvmlDeviceGetNvLinkRemoteDeviceType(self, gpu: GpuSim, link: int) -> int:
        """Every link lands on an NVSwitch."""
        _link(link)
        return pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH

    @_nvml("device")
    def nvmlDeviceGetNvLinkErrorCounter(self, gpu: GpuSim, link: int, counter: int) -> int:
        """Legacy DL counters are not supported on Blackwell; use the NVLink5 COUNT_* fields."""
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    @_nvml("device")
    def nvmlDeviceGetFieldValues(self, gpu: GpuSim, fieldIds: Sequence[Any]) -> Any:
        """A ctypes array of real c_nvmlFieldValue_t, one per request, each with its own nvmlReturn."""
        values = (pynvml.c_nvmlFieldValue_t * len(fieldIds))()
        for i, field_id in enumerate(fieldIds):
            try:
                (values[i].fieldId, values[i].scopeId) = field_id
            except TypeError:
                values[i].fieldId = field_id
        device = gpu.id.device
        forced = {fid: self._take(self._field_errors.get(fid), device) for fid in {v.fieldId for v in values}}
        ts_us = int(self.rack.time * 1_000_000)
        sibling = self._sibling(gpu)
        for entry in values:
            fields.fill(entry, gpu, sibling, ts_us, forced[entry.fieldId])
        return values

    # -- processes ----------------------------------------------------------------------------------

    def _process_name(self, gpu: GpuSim) -> str:
        inst = self.rack.workload.instances[self.rack.workload.instance_of_gpu[gpu.id.index]]
        rank = inst.gpus.index(gpu.id.index)
        names = {"vllm": "VLLM::Worker_TP{r}", "sglang": "sglang::scheduler_TP{r}"}
        return names.get(inst.engine, "trtllm-serve rank {r}").format(r=rank)

    @_nvml("device")
    def nvmlDeviceGetComputeRunningProcesses(self, gpu: GpuSim) -> list[Any]:
        """The serving worker on this GPU, as pynvml's friendly objects (pid, usedGpuMemory bytes, ...)."""
        if gpu.mem_used_mib == 0:
            return []
        info = pynvml.c_nvmlProcessInfo_v2_t(
            pid=_pid(gpu),
            usedGpuMemory=gpu.mem_used_mib * MIB,
            gpuInstanceId=NOT_MIG,
            computeInstanceId=NOT_MIG,
        )
        return [pynvml.nvmlStructToFriendlyObject(info)]

    @_nvml("device")
    def nvmlDeviceGetGraphicsRunningProcesses(self, gpu: GpuSim) -> list[Any]:
        """No graphics work on a compute tray."""
        return []

    # -- events -------------------------------------------------------------------------------------

    @_nvml("system")
    def nvmlEventSetCreate(self) -> pynvml.c_nvmlEventSet_t:
        """A new, empty event set (a real c_nvmlEventSet_t)."""
        event_set = new_event_set()
        self._event_sets[address(event_set.handle) or 0] = event_set
        return event_set.handle

    def _event_set(self, handle: object) -> EventSet:
        event_set = self._event_sets.get(address(handle) or 0)
        if event_set is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return event_set

    @_nvml("device")
    def nvmlDeviceGetSupportedEventTypes(self, gpu: GpuSim) -> int:
        """XID, single- and double-bit ECC."""
        return SUPPORTED_EVENT_TYPES

    @_nvml("device")
    def nvmlDeviceRegisterEvents(self, gpu: GpuSim, eventTypes: int, eventSet: Any) -> None:
        """Listen for `eventTypes` on this GPU; only events after this call are delivered."""
        event_set = self._event_set(eventSet)
        mask = eventTypes & SUPPORTED_EVENT_TYPES
        if not mask:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        event_set.register(gpu.id.index, mask, len(self.rack.events))

    @_nvml("system")
    def nvmlEventSetFree(self, eventSet: Any) -> None:
        """Forget the set."""
        self._event_sets.pop(address(self._event_set(eventSet).handle) or 0)

    @_nvml("system")
    def nvmlEventSetWait(self, eventSet: Any, timeoutms: int) -> pynvml.c_nvmlEventData_t:
        """The next event of the set, waiting at most `timeoutms` wall-clock ms; NVMLError_Timeout if none.

        Wakes as soon as the rack steps (another caller advanced it) or, on a clock that moves by
        itself, at the next step boundary; timeoutms=0 never blocks.
        """
        rack = self.rack
        event_set = self._event_set(eventSet)
        deadline = time.monotonic() + max(timeoutms, 0) / 1000.0
        rate = getattr(rack.clock, "speed", 1.0)
        while True:
            rack.sync()
            data = self._next_event(event_set)
            if data is not None:
                return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
            if rate > 0:
                to_next_step = (rack.time + rack.step_s - rack.clock.now()) / rate
                remaining = min(remaining, max(to_next_step, 0.001))
            rack.stepped.wait(remaining)
            if address(event_set.handle) not in self._event_sets:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def _next_event(self, event_set: EventSet) -> pynvml.c_nvmlEventData_t | None:
        events = self.rack.events
        while event_set.cursor < len(events):
            index = event_set.cursor
            event = events[index]
            event_set.cursor += 1
            mask = event_set.masks.get(event.gpu, 0)
            if mask & event.event_type and index >= event_set.since[event.gpu]:
                data = pynvml.c_nvmlEventData_t()
                data.device = self._handles[self.gpu_indices.index(event.gpu)]
                data.eventType = event.event_type
                data.eventData = event.data
                data.gpuInstanceId = NOT_MIG
                data.computeInstanceId = NOT_MIG
                return data
        return None


def _pid(gpu: GpuSim) -> int:
    # Unique across the rack so a process table keyed by pid never collides between trays.
    return 41_000 + gpu.id.index


def _link(link: int) -> int:
    if 0 <= link < LINKS_PER_GPU:
        return link
    if LINKS_PER_GPU <= link < pynvml.NVML_NVLINK_MAX_LINKS:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)


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
