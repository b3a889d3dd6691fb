"""The event-set part of SimTray: XIDs and ECC errors delivered through nvmlEventSetWait."""

from __future__ import annotations

import time
from typing import Any

import pynvml

from collectors.sim.gpu import GpuSim
from collectors.sim.nvml_base import (
    NOT_MIG,
    SUPPORTED_EVENT_TYPES,
    EventSet,
    TrayBase,
    address,
    new_event_set,
    nvml_call,
)


class EventCalls(TrayBase):
    """The event-set part of SimTray: XIDs and ECC errors through nvmlEventSetWait."""

    @nvml_call("system")
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

    @nvml_call("device")
    def nvmlDeviceGetSupportedEventTypes(self, gpu: GpuSim) -> int:
        """XID, single- and double-bit ECC."""
        return SUPPORTED_EVENT_TYPES

    @nvml_call("device")
    def nvmlDeviceRegisterEvents(self, gpu: GpuSim, eventTypes: int, eventSet: Any) -> None:
        """Listen for `eventTypes` on this GPU; only events after this call are delivered."""
        event_set = self._event_set(eventSet)
        mask = eventTypes & SUPPORTED_EVENT_TYPES
        if not mask:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        event_set.register(gpu.id.index, mask, len(self.rack.events))

    @nvml_call("system")
    def nvmlEventSetFree(self, eventSet: Any) -> None:
        """Forget the set."""
        self._event_sets.pop(address(self._event_set(eventSet).handle) or 0)

    @nvml_call("system")
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
