"""XID events for the NVML collector: one event set for the host's GPUs, drained each tick without waiting."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Sequence
from typing import Any

import pynvml

from collectors.nvml_errors import NVML_EXCEPTIONS
from collectors.nvml_fields import xid_detail
from collectors.nvml_rows import EventRows
from collectors.nvml_static import GpuInfo
from storage.columns import EventKind

MAX_EVENTS_PER_TICK = 1024
"""Bound on events drained in one tick, so an event storm cannot stall collection."""


def handle_key(handle: Any) -> Any:
    """A hashable identity for a device handle: the address a ctypes pointer holds, else the object.

    NVML hands back a new pointer object for the same device in each event, so handles are compared
    by address.
    """
    if isinstance(handle, ctypes._Pointer):
        return ctypes.cast(handle, ctypes.c_void_p).value
    try:
        hash(handle)
    except TypeError:
        return id(handle)
    return handle


class XidEvents:
    """An NVML event set registered for XID critical errors on the given GPUs.

    A driver that cannot create the set, or registers none of the GPUs, simply yields no events.
    """

    def __init__(self, nvml: Any, gpus: Sequence[tuple[Any, GpuInfo]], lost: Sequence[GpuInfo] = ()) -> None:
        """Create the set and register every (handle, info) in `gpus` on it.

        `lost` are GPUs lost at open (no handle to register): an event naming one of their UUIDs still
        gets its GPU, and register() adds them once they answer again.
        """
        self._nvml = nvml
        self._by_handle: dict[Any, GpuInfo] = {}
        self._by_uuid = {info.uuid: info for info in lost}
        self._set: Any = None
        for handle, info in gpus:
            self.register(handle, info)

    def register(self, handle: Any, info: GpuInfo) -> bool:
        """Listen for XIDs on one GPU (again, after it recovered); False where the driver refuses.

        The set is created with the first GPU it takes, so a host whose GPUs were all lost at open
        still gets one once a GPU comes back.
        """
        self._by_handle[handle_key(handle)] = info
        self._by_uuid[info.uuid] = info
        created = self._set is None
        if created:
            try:
                self._set = self._nvml.nvmlEventSetCreate()
            except NVML_EXCEPTIONS:
                return False
        try:
            self._nvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError, self._set)
        except NVML_EXCEPTIONS:  # NOT_SUPPORTED on this GPU: the set still serves the others
            if created:  # a set nobody is registered on yields nothing: free it
                self.close()
            return False
        return True

    @property
    def active(self) -> bool:
        """Whether any GPU is registered (False: this host yields no XID events)."""
        return self._set is not None

    def drain(self, into: EventRows) -> int:
        """Add every pending XID event to `into` without waiting (timeout 0); returns how many.

        Stops at NVML's Timeout (nothing pending). GPU_IS_LOST or another error also ends this tick's
        drain: the per-GPU calls find which GPU is gone, and events still queued come next tick.
        """
        if self._set is None:
            return 0
        wait = self._nvml.nvmlEventSetWait
        taken = 0
        for _ in range(MAX_EVENTS_PER_TICK):
            try:
                data = wait(self._set, 0)
            except NVML_EXCEPTIONS:
                break
            if not data.eventType & pynvml.nvmlEventTypeXidCriticalError:
                continue
            info = self._gpu_of(data.device)
            xid = int(data.eventData)
            into.add(EventKind.XID, None if info is None else info.gpu, None, xid, xid_detail(xid))
            taken += 1
        return taken

    def _gpu_of(self, device: Any) -> GpuInfo | None:
        """The GPU an event's device handle names (by address, else by asking its UUID)."""
        info = self._by_handle.get(handle_key(device))
        if info is not None:
            return info
        try:
            return self._by_uuid.get(self._nvml.nvmlDeviceGetUUID(device))
        except NVML_EXCEPTIONS:
            return None

    def _free(self, event_set: Any) -> None:
        with contextlib.suppress(NVML_EXCEPTIONS):
            self._nvml.nvmlEventSetFree(event_set)

    def close(self) -> None:
        """Free the event set (idempotent)."""
        if self._set is not None:
            self._free(self._set)
            self._set = None
