"""The NVLink part of SimTray: link state, version, far end and the legacy error counters."""

from __future__ import annotations

import pynvml

from collectors.rack import LINKS_PER_GPU
from collectors.sim.gpu import GpuSim
from collectors.sim.nvml_base import TrayBase, nvml_call

__all__ = ["LinkCalls", "link_number"]


class LinkCalls(TrayBase):
    """The per-link NVML calls of a simulated tray (NVLink 5, every link to an NVSwitch)."""

    @nvml_call("device")
    def nvmlDeviceGetNvLinkState(self, gpu: GpuSim, link: int) -> int:
        """NVML_FEATURE_ENABLED while the link is active."""
        return (
            pynvml.NVML_FEATURE_ENABLED
            if gpu.links.active[link_number(link)]
            else pynvml.NVML_FEATURE_DISABLED
        )

    @nvml_call("device")
    def nvmlDeviceGetNvLinkVersion(self, gpu: GpuSim, link: int) -> int:
        """NVML_NVLINK_VERSION_5_0 (7)."""
        link_number(link)
        return pynvml.NVML_NVLINK_VERSION_5_0

    @nvml_call("device")
    def nvmlDeviceGetNvLinkRemoteDeviceType(self, gpu: GpuSim, link: int) -> int:
        """Every link lands on an NVSwitch."""
        link_number(link)
        return pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH

    @nvml_call("device")
    def nvmlDeviceGetNvLinkErrorCounter(self, gpu: GpuSim, link: int, counter: int) -> int:
        """Legacy DL counters are not supported on Blackwell; use the NVLink5 COUNT_* fields."""
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)


def link_number(link: int) -> int:
    """`link` when this GPU has it; NOT_SUPPORTED past its links, INVALID_ARGUMENT past NVML's."""
    if 0 <= link < LINKS_PER_GPU:
        return link
    if LINKS_PER_GPU <= link < pynvml.NVML_NVLINK_MAX_LINKS:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
