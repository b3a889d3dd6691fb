"""SimHgxHost: the NVML of an 8-GPU H100 HGX board, a drop-in for the `pynvml` module without platform info.

The host variant the rack simulator lacked: 8 GPUs behind one NVML, nvmlDeviceGetPlatformInfo answering
NOT_SUPPORTED (NVML documents platform info for Blackwell's rack-scale systems; an H100 capture shows
tray_index, slot_number and host_id as N/A), so the collector cannot place its GPUs in a rack.

Static facts follow the `nvidia-smi -q -x` capture of an 8x H100 80GB HBM3 node in NVIDIA's k8s-test-infra
repository (tests/e2e/go/assertions/nvidiasmi/testdata/hardware/, driver 580.105.08): name, 81,559 MiB
(480 MiB reserved), a 700 W limit (200 W minimum), max SM 1,980 MHz, memory 2,619 MHz, video 1,545 MHz,
PCI IDs and bus numbers. 18 NVLink links of NVLink 4 per GPU, as in NVIDIA's Hopper architecture
description (https://developer.nvidia.com/blog/nvidia-hopper-architecture-in-depth/: "18 fourth-generation
NVLink links", 900 GB/s per GPU).

Behind it run eight GPUs of the simulated rack (compute trays `first_tray` and the next), so the workload,
the scenarios and the fault hooks (SimRack.lose_gpu, inject_error) work unchanged. Their physics is the
GB300's: power, energy, memory use and SM/video clocks are scaled into the H100's limits (power and energy by
700/1400, memory by 81559/284208, clocks by the max clocks' ratio), so readings stay within what the device
reports as its limits; the dynamics are not calibrated on H100 hardware.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pynvml

from collectors.rack import GPUS_PER_TRAY, gpu_index
from collectors.sim.gpu import (
    MAX_SM_MHZ,
    MAX_VIDEO_MHZ,
    MEM_TOTAL_MIB,
    MODULE_BY_DEVICE,
    POWER_LIMIT_MW,
    GpuSim,
)
from collectors.sim.link_calls import link_number
from collectors.sim.nvml_base import nvml_call
from collectors.sim.tray import SimTray

if TYPE_CHECKING:
    from collectors.sim.model import RackModel

HGX_GPUS = 2 * GPUS_PER_TRAY
"""An HGX H100 board's 8 GPUs: two simulated trays' worth."""
H100_NAME = "NVIDIA H100 80GB HBM3"
H100_MEM_TOTAL_MIB = 81_559
H100_MEM_RESERVED_MIB = 480
H100_POWER_LIMIT_MW = 700_000
H100_POWER_MIN_LIMIT_MW = 200_000
H100_MAX_SM_MHZ = 1_980
H100_MEM_MHZ = 2_619
H100_MAX_VIDEO_MHZ = 1_545
H100_PCI_DEVICE_ID = 0x233010DE
H100_PCI_SUBSYSTEM_ID = 0x16C110DE
H100_BUSES = (0x53, 0x64, 0x75, 0x86, 0x97, 0xA8, 0xB9, 0xCA)
"""PCI bus of NVML device 0..7 (domain 0), as in the capture."""
MIB = 1 << 20

_POWER_SCALE = H100_POWER_LIMIT_MW / POWER_LIMIT_MW
_MEM_SCALE = H100_MEM_TOTAL_MIB / MEM_TOTAL_MIB
_SM_SCALE = H100_MAX_SM_MHZ / MAX_SM_MHZ
_VIDEO_SCALE = H100_MAX_VIDEO_MHZ / MAX_VIDEO_MHZ


class SimHgxHost(SimTray):
    """One 8-GPU HGX H100 host of a SimRack: NVML devices 0..7, no platform info; use it as `pynvml`."""

    mem_total_mib = H100_MEM_TOTAL_MIB
    mem_reserved_mib = H100_MEM_RESERVED_MIB
    power_limit_mw = H100_POWER_LIMIT_MW
    power_min_limit_mw = H100_POWER_MIN_LIMIT_MW

    def __init__(self, rack: RackModel, first_tray: int = 1) -> None:
        """The GPUs of compute trays `first_tray` and `first_tray + 1`, in their trays' NVML order."""
        trays = (first_tray, first_tray + 1)
        indices = [gpu_index(t, m) for t in trays for m in MODULE_BY_DEVICE]
        super().__init__(rack, first_tray, gpu_indices=indices)

    def __repr__(self) -> str:
        """SimHgxHost(trays 1-2)."""
        return f"SimHgxHost(trays {self.tray}-{self.tray + 1})"

    def _device(self, gpu: GpuSim) -> int:
        return self.gpu_indices.index(gpu.id.index)

    # -- identity -----------------------------------------------------------------------------------

    @nvml_call("device")
    def nvmlDeviceGetName(self, gpu: GpuSim) -> str:
        """'NVIDIA H100 80GB HBM3'."""
        return H100_NAME

    @nvml_call("device")
    def nvmlDeviceGetSerial(self, gpu: GpuSim) -> str:
        """Each H100 board has its own serial (no superchip to share one)."""
        return f"165{self.rack.seed % 10_000:04d}{gpu.id.index:06d}"

    @nvml_call("device")
    def nvmlDeviceGetPciInfo(self, gpu: GpuSim) -> pynvml.nvmlPciInfo_t:
        """A real nvmlPciInfo_t on domain 0, buses 0x53..0xCA."""
        bus = H100_BUSES[self._device(gpu)]
        info = pynvml.nvmlPciInfo_t()
        info.domain = 0
        info.bus = bus
        info.device = 0
        info.pciDeviceId = H100_PCI_DEVICE_ID
        info.pciSubSystemId = H100_PCI_SUBSYSTEM_ID
        info.busId = f"00000000:{bus:02X}:00.0".encode()
        info.busIdLegacy = f"0000:{bus:02X}:00.0".encode()
        return info

    @nvml_call("device")
    def nvmlDeviceGetPlatformInfo(self, gpu: GpuSim, platformInfo: Any) -> int:
        """NOT_SUPPORTED: an HGX board has no rack position to report."""
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    @nvml_call("device")
    def nvmlDeviceGetCudaComputeCapability(self, gpu: GpuSim) -> tuple[int, int]:
        """(9, 0): sm_90."""
        return (9, 0)

    @nvml_call("device")
    def nvmlDeviceGetArchitecture(self, gpu: GpuSim) -> int:
        """NVML_DEVICE_ARCH_HOPPER."""
        return pynvml.NVML_DEVICE_ARCH_HOPPER

    @nvml_call("device")
    def nvmlDeviceGetNvLinkVersion(self, gpu: GpuSim, link: int) -> int:
        """NVML_NVLINK_VERSION_4_0."""
        link_number(link)
        return pynvml.NVML_NVLINK_VERSION_4_0

    # -- memory, power, clocks ----------------------------------------------------------------------

    def _used_mib(self, gpu: GpuSim) -> int:
        """The simulated GPU's memory use scaled into 80 GB."""
        return round(gpu.mem_used_mib * _MEM_SCALE)

    def _power_mw(self, gpu: GpuSim) -> int:
        """The simulated GPU's power scaled into the 700 W limit."""
        return round(gpu.power_mw * _POWER_SCALE)

    @nvml_call("device")
    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: GpuSim) -> int:
        """mJ since driver load (monotonic), on the same scale as the power."""
        return int(gpu.energy_mj * _POWER_SCALE)

    @nvml_call("device")
    def nvmlDeviceGetMaxClockInfo(self, gpu: GpuSim, type: int) -> int:
        """MHz: graphics/SM 1980, memory 2619, video 1545."""
        return _clock(type, H100_MAX_SM_MHZ, H100_MAX_VIDEO_MHZ)

    @nvml_call("device")
    def nvmlDeviceGetClockInfo(self, gpu: GpuSim, type: int) -> int:
        """Current MHz."""
        return _clock(type, round(gpu.sm_mhz * _SM_SCALE), round(gpu.video_mhz * _VIDEO_SCALE))


def _clock(clock_type: int, sm: int, video: int) -> int:
    if clock_type in (pynvml.NVML_CLOCK_GRAPHICS, pynvml.NVML_CLOCK_SM):
        return sm
    if clock_type == pynvml.NVML_CLOCK_MEM:
        return H100_MEM_MHZ
    if clock_type == pynvml.NVML_CLOCK_VIDEO:
        return video
    raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
