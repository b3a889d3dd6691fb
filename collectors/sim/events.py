"""Simulated NVML event sets: which devices and event types a set listens to, and what it has delivered."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import pynvml

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
