"""Static facts of each local GPU (read once at open), its place in the rack, and whether NVML works here."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pynvml

from collectors import rack
from collectors.nvml_errors import NVML_EXCEPTIONS, Outcome, error_name, outcome_of
from collectors.nvml_fields import FI_NVLINK_LINK_COUNT, decode_field_values

MIB = 1 << 20
UNKNOWN_UUID_PREFIX = "GPU-unknown-"
"""The start of the stand-in UUID of a GPU lost before its UUID was read (see gpu_infos)."""


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this host; str() is one line an operator can act on."""


Placement = Literal["platform", "config", "board"]


@dataclass(frozen=True)
class GpuInfo:
    """What does not change while a GPU is up: identity, place in the rack, capacities.

    Attributes:
        nvml_index: the GPU's index in this host's NVML (0..3 on a compute tray).
        gpu: the key of every row this GPU produces: rack index 0..71, or on a board its NVML index.
        tray: compute tray 1..18, or rack.BOARD_TRAY (0) on a host that is not in a rack.
        module: module 1..4 within the tray (NVML index + 1 on a board).
        placed_by: "platform" (nvmlDeviceGetPlatformInfo), "config" (the configured or the sibling GPUs'
            tray, module = NVML index + 1) or "board" (no platform info and no tray: a host of its own,
            such as an 8-GPU HGX board, keyed by NVML index).
        uuid: "GPU-..."; the GPU's identity (serials repeat across the two GPUs of a superchip).
        slot: the physical slot from platform info, when known.
        nvlink_count: NVLinks on the device (field 91); 0 when unknown.
        Other attributes are None when NVML did not answer at open.
    """

    nvml_index: int
    gpu: int
    tray: int
    module: int
    placed_by: Placement
    uuid: str
    name: str | None
    serial: str | None
    pci_bus_id: str | None
    slot: int | None
    mem_total_mib: int | None
    power_limit_mw: int | None
    max_sm_clock_mhz: int | None
    max_mem_clock_mhz: int | None
    nvlink_count: int

    @property
    def label(self) -> str:
        """How an operator names this GPU: 'T16.G2' in a rack, 'GPU3' on a board."""
        return rack.board_gpu_label(self.gpu) if self.placed_by == "board" else rack.gpu_label(self.gpu)


@dataclass
class GpuFacts:
    """Static facts as read, before placement; `lost` when the GPU answered GPU_IS_LOST while reading."""

    nvml_index: int
    handle: Any
    lost: bool = False
    uuid: str | None = None
    name: str | None = None
    serial: str | None = None
    pci_bus_id: str | None = None
    platform: tuple[int, int, int] | None = None  # (tray 1..18, module 1..4, slot)
    raw_platform: RawPlatform | None = None
    platform_note: str = ""
    """Why `platform` is None: the NVML error of the call (NOT_SUPPORTED) or the value outside the rack."""
    mem_total_mib: int | None = None
    power_limit_mw: int | None = None
    max_sm_clock_mhz: int | None = None
    max_mem_clock_mhz: int | None = None
    nvlink_count: int = 0


def read_uchar(info: Any, name: str) -> int:
    """An `unsigned char` member of an NVML struct that pynvml declares as c_char.

    pynvml decodes c_char members as UTF-8 text, which fails for values >= 0x80, so real ctypes
    structs are read byte-wise at the member's offset.
    """
    if isinstance(info, ctypes.Structure):
        offset = getattr(type(info), name).offset
        return ctypes.string_at(ctypes.addressof(info) + offset, 1)[0]
    value = getattr(info, name)
    return value if isinstance(value, int) else ord(value)


@dataclass(frozen=True)
class RawPlatform:
    """nvmlDeviceGetPlatformInfo (the nvmlPlatformInfo_v2_t struct) as the driver answered it, before any
    mapping: what `monitor doctor` prints next to where the GPU is placed."""

    tray_index: int
    slot_number: int
    host_id: int
    peer_type: int
    module_id: int
    chassis_serial: str

    def text(self) -> str:
        """'trayIndex=15 slotNumber=25 moduleId=2 hostId=1 peerType=1 chassis=1820000000001'."""
        return (
            f"trayIndex={self.tray_index} slotNumber={self.slot_number} moduleId={self.module_id} "
            f"hostId={self.host_id} peerType={self.peer_type} chassis={self.chassis_serial or '?'}"
        )


def read_raw_platform(nvml: Any, handle: Any) -> RawPlatform:
    """The GPU's platform info as read (v2 struct). Raises the NVML error (NOT_SUPPORTED before Blackwell)."""
    info = nvml.c_nvmlPlatformInfo_v2_t()
    nvml.nvmlDeviceGetPlatformInfo(handle, ctypes.byref(info))
    serial = info.chassisSerialNumber  # pynvml decodes c_char arrays to str; plain ctypes gives bytes
    if isinstance(serial, bytes):
        serial = serial.split(b"\0", 1)[0].decode("ascii", "replace")
    return RawPlatform(
        tray_index=read_uchar(info, "trayIndex"),
        slot_number=read_uchar(info, "slotNumber"),
        host_id=read_uchar(info, "hostId"),
        peer_type=read_uchar(info, "peerType"),
        module_id=read_uchar(info, "moduleId"),
        chassis_serial=serial,
    )


def platform_place(raw: RawPlatform, tray_index_base: int) -> tuple[int, int, int]:
    """(tray 1..18, module 1..4, slot) of a GPU from its raw platform info.

    Raises:
        ValueError: the tray or module is outside the rack (one line saying which value).
    """
    tray = rack.tray_from_platform(raw.tray_index, tray_index_base)
    rack.gpu_index(tray, raw.module_id)
    return tray, raw.module_id, raw.slot_number


def read_facts(nvml: Any, index: int, tray_index_base: int = rack.TRAY_INDEX_BASE) -> GpuFacts:
    """Read one GPU's static facts; each fact NVML cannot give stays None.

    Args:
        tray_index_base: what trayIndex reads for compute tray 1 (collectors.rack.TRAY_INDEX_BASE).
    """
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except NVML_EXCEPTIONS as exc:
        return GpuFacts(index, None, lost=outcome_of(exc) is Outcome.LOST)
    facts = GpuFacts(index, handle)

    def ask(fn: Callable[[], Any]) -> Any:
        if facts.lost:
            return None
        try:
            return fn()
        except NVML_EXCEPTIONS as exc:
            facts.lost = outcome_of(exc) is Outcome.LOST
            return None

    facts.uuid = ask(lambda: nvml.nvmlDeviceGetUUID(handle))
    facts.name = ask(lambda: nvml.nvmlDeviceGetName(handle))
    facts.serial = ask(lambda: nvml.nvmlDeviceGetSerial(handle))
    facts.pci_bus_id = ask(lambda: nvml.nvmlDeviceGetPciInfo(handle).busId)
    _read_platform(nvml, facts, tray_index_base)
    memory = ask(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    facts.mem_total_mib = None if memory is None else memory.total // MIB
    facts.power_limit_mw = ask(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    facts.max_sm_clock_mhz = ask(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM))
    facts.max_mem_clock_mhz = ask(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM))
    counted = ask(lambda: nvml.nvmlDeviceGetFieldValues(handle, [(FI_NVLINK_LINK_COUNT, 0)]))
    if counted is not None:
        values, _ = decode_field_values(counted)
        facts.nvlink_count = max(0, min(int(values[0] or 0), 64))
    return facts


def _read_platform(nvml: Any, facts: GpuFacts, tray_index_base: int) -> None:
    """Fill facts.raw_platform and facts.platform, or facts.platform_note with why there is no place."""
    if facts.lost:
        return
    try:
        facts.raw_platform = read_raw_platform(nvml, facts.handle)
    except NVML_EXCEPTIONS as exc:
        facts.lost = outcome_of(exc) is Outcome.LOST
        facts.platform_note = error_name(exc)
        return
    try:
        facts.platform = platform_place(facts.raw_platform, tray_index_base)
    except ValueError as exc:
        facts.platform_note = str(exc)


def place(facts: Sequence[GpuFacts], tray: int | None) -> list[tuple[int, int, int, Placement, int | None]]:
    """Place each GPU: (row key, tray, module, how, slot) per GPU, in NVML order.

    Platform info wins. A GPU without it goes to the configured tray, else to the tray its siblings
    report (a GPU that fell off the bus before the collector started), as module NVML index + 1 or, if
    a sibling holds that one, the first free module. With neither, the host is not in a rack (an HGX
    board): its key is its NVML index, its tray rack.BOARD_TRAY, its name GPU<index>.

    Raises:
        ValueError: a tray is configured for a host with more GPUs than a tray holds, the host has more
            GPUs than a rack, or two GPUs land on one place (one line each).
    """
    if tray is not None and len(facts) > rack.GPUS_PER_TRAY:
        raise ValueError(
            f"compute tray {tray} was given, but this host has {len(facts)} GPUs and a GB300 compute tray "
            f"holds {rack.GPUS_PER_TRAY}: leave the tray out and they are shown as GPU0..GPU{len(facts) - 1}"
        )
    if len(facts) > rack.GPUS:
        raise ValueError(f"this host has {len(facts)} GPUs; rack-monitor shows at most {rack.GPUS} per host")
    sibling_trays = {f.platform[0] for f in facts if f.platform is not None}
    fallback_tray = tray
    if fallback_tray is None and len(sibling_trays) == 1 and len(facts) <= rack.GPUS_PER_TRAY:
        fallback_tray = next(iter(sibling_trays))
    # Modules the platform-placed siblings hold in the fallback tray: NVML order is not module order
    # (a GB300 tray lists modules 2, 1, 4, 3), so an unplaced GPU takes index + 1 only when it is free.
    taken = {f.platform[1] for f in facts if f.platform is not None and f.platform[0] == fallback_tray}
    placed: list[tuple[int, int, int, Placement, int | None]] = []
    for f in facts:
        if f.platform is not None:
            t, module, slot = f.platform
            placed.append((rack.gpu_index(t, module), t, module, "platform", slot))
        elif fallback_tray is not None:
            module = f.nvml_index + 1
            if module in taken:
                free = [m for m in range(1, rack.GPUS_PER_TRAY + 1) if m not in taken]
                module = free[0] if free else module
            taken.add(module)
            placed.append((rack.gpu_index(fallback_tray, module), fallback_tray, module, "config", None))
        else:
            placed.append((f.nvml_index, rack.BOARD_TRAY, f.nvml_index + 1, "board", None))
    seen: dict[int, int] = {}
    for f, (gpu, *_rest) in zip(facts, placed, strict=True):
        if gpu in seen:
            raise ValueError(
                f"NVML GPUs {seen[gpu]} and {f.nvml_index} both map to rack position {rack.gpu_label(gpu)}"
            )
        seen[gpu] = f.nvml_index
    return placed


def gpu_infos(facts: Sequence[GpuFacts], tray: int | None) -> list[GpuInfo]:
    """GpuInfo of every GPU, placed (see place()); ValueError (one line) when they cannot be."""
    infos = []
    for f, (gpu, t, module, how, slot) in zip(facts, place(facts, tray), strict=True):
        infos.append(
            GpuInfo(
                nvml_index=f.nvml_index,
                gpu=gpu,
                tray=t,
                module=module,
                placed_by=how,
                # A GPU lost before its UUID was read still needs a stable, recognisable key.
                uuid=f.uuid or f"{UNKNOWN_UUID_PREFIX}nvml{f.nvml_index}",
                name=f.name,
                serial=f.serial,
                pci_bus_id=f.pci_bus_id,
                slot=slot,
                mem_total_mib=f.mem_total_mib,
                power_limit_mw=f.power_limit_mw,
                max_sm_clock_mhz=f.max_sm_clock_mhz,
                max_mem_clock_mhz=f.max_mem_clock_mhz,
                nvlink_count=f.nvlink_count,
            )
        )
    return infos


def init_reason(exc: BaseException) -> str:
    """One line for why nvmlInit or nvmlDeviceGetCount failed."""
    if isinstance(exc, pynvml.NVMLError_LibraryNotFound):
        return "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this host"
    if isinstance(exc, pynvml.NVMLError_DriverNotLoaded):
        return "NVIDIA driver is not loaded (nvidia kernel module missing)"
    if isinstance(exc, pynvml.NVMLError_LibRmVersionMismatch):
        return "NVML library and NVIDIA kernel driver versions differ (reboot or reload the driver)"
    if isinstance(exc, pynvml.NVMLError_NoPermission):
        return "no permission to open the NVIDIA devices (/dev/nvidia*)"
    return f"NVML failed to initialise: {error_name(exc)}"


def nvml_available(nvml: Any = pynvml) -> str | None:
    """None when NVML works here and sees at least one GPU, else a one-line reason.

    Args:
        nvml: the pynvml module, or a pynvml-compatible one (a simulated tray).
    """
    try:
        nvml.nvmlInit()
    except NVML_EXCEPTIONS as exc:
        return init_reason(exc)
    except OSError as exc:  # a broken libnvidia-ml.so (wrong architecture, missing symbols)
        return f"NVML library could not be loaded: {exc}"
    try:
        count = nvml.nvmlDeviceGetCount()
    except NVML_EXCEPTIONS as exc:
        return init_reason(exc)
    finally:
        with contextlib.suppress(NVML_EXCEPTIONS):
            nvml.nvmlShutdown()
    return None if count > 0 else "NVML works but sees no NVIDIA GPUs on this host"
