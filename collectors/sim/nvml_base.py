"""The machinery under SimTray: pynvml-style call wrapping, handles, forwarding and error injection."""

from __future__ import annotations

import ctypes
import functools
import inspect
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pynvml

from collectors.rack import gpu_index
from collectors.sim.gpu import MODULE_BY_DEVICE

if TYPE_CHECKING:
    from collectors.sim.model import RackModel

SUPPORTED_EVENT_TYPES = (
    pynvml.nvmlEventTypeXidCriticalError
    | pynvml.nvmlEventTypeSingleBitEccError
    | pynvml.nvmlEventTypeDoubleBitEccError
)
"""What nvmlDeviceGetSupportedEventTypes reports and the simulator can raise."""

NOT_MIG = 0xFFFFFFFF
"""gpuInstanceId / computeInstanceId of an event not attributable to a MIG instance."""


@dataclass
class EventSet:
    """One nvmlEventSet_t: per rack GPU, the event-type mask and the first rack event it may see."""

    buffer: ctypes.Array[ctypes.c_char]
    """Keeps the memory the real c_nvmlEventSet_t handle points at alive."""
    handle: pynvml.c_nvmlEventSet_t
    masks: dict[int, int] = field(default_factory=dict)
    since: dict[int, int] = field(default_factory=dict)
    """Rack GPU -> index into SimRack.events from which it was registered (earlier events are not seen)."""
    cursor: int = 0
    """Index into SimRack.events of the next event to consider."""

    def register(self, gpu: int, mask: int, first_event: int) -> None:
        """Listen to `mask` on rack GPU `gpu` for events from index `first_event` on."""
        if gpu not in self.masks:
            self.since[gpu] = first_event
            if not self.masks:
                self.cursor = first_event
        self.masks[gpu] = self.masks.get(gpu, 0) | mask


def new_event_set() -> EventSet:
    """A set whose handle is a real c_nvmlEventSet_t pointing at memory it owns."""
    buffer = ctypes.create_string_buffer(8)
    return EventSet(buffer=buffer, handle=ctypes.cast(buffer, pynvml.c_nvmlEventSet_t))


def address(handle: object) -> int | None:
    """The address a ctypes handle points at, or None when it is not a pointer."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value  # type: ignore[arg-type]
    except (TypeError, ctypes.ArgumentError):
        return None


_PURE_HELPERS = frozenset({"nvmlExceptionClass", "nvmlStructToFriendlyObject", "nvmlFriendlyObjectToStruct"})

F = TypeVar("F", bound=Callable[..., Any])
NVML_FUNCTIONS: set[str] = set()
"""Names of the pynvml functions a SimTray implements."""


@dataclass
class _Injection:
    code: int
    gpu: int | None
    times: int | None


def nvml_call(kind: str) -> Callable[[F], F]:
    """Wrap a pynvml-named method: init check, injected errors, rack sync, handle -> GpuSim, lost GPUs.

    kind "device": the first argument is a device handle and the method receives the GpuSim instead.
    kind "system": no device; the method is called as is.
    """

    def decorate(fn: F) -> F:
        name = fn.__name__
        NVML_FUNCTIONS.add(name)
        first = next(iter(inspect.signature(getattr(pynvml, name)).parameters), None)

        @functools.wraps(fn)
        def wrapper(self: TrayBase, *args: Any, **kwargs: Any) -> Any:
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


class TrayBase:
    """State and test hooks shared by every part of SimTray (see collectors.sim.tray)."""

    def __init__(self, rack: RackModel, tray: int, *, gpu_indices: Sequence[int] | None = None) -> None:
        """Tray 1..18 of `rack` (NVML trayIndex = tray - 1).

        Args:
            gpu_indices: the rack GPUs this NVML sees, in NVML order; the tray's 4 in the GB300 order by
                default (a host of another shape, collectors.sim.hgx, passes its own).
        """
        self.rack = rack
        self.tray = tray
        self.tray_index = tray - 1
        self.gpu_indices = (
            list(gpu_indices)
            if gpu_indices is not None
            else [gpu_index(tray, module) for module in MODULE_BY_DEVICE]
        )
        """Rack GPU index of each NVML device index."""
        self._refcount = 0
        self._buffers = [ctypes.create_string_buffer(8) for _ in self.gpu_indices]
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

    def _handle(self, index: int) -> pynvml.c_nvmlDevice_t:
        if self.rack.gpus[self.gpu_indices[index]].lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return self._handles[index]
