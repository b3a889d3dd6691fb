"""A lost GPU comes back: the real NVML collector over a simulated tray, on a manual clock."""

from __future__ import annotations

import dataclasses
from typing import Any

import pynvml

from collectors.clock import SimClock
from collectors.nvml import NvmlCollector
from collectors.sim import SimRack
from storage.schemas import EventKind, GpuState
from tests.collectors.test_nvml_collector import Recorder, events, gpu_rows, link_rows

START = 1_700_000_000.0
DEVICE = 1  # the NVML index of the GPU the tests lose


class OneTray:
    """Tray 9 of a simulated rack with its collector, polled at whole seconds after START."""

    def __init__(self, lose_before_open: bool = False) -> None:
        self.clock = SimClock(start=START)
        self.rack = SimRack(seed=3, clock=self.clock)
        self.tray = self.rack.trays[8]
        self.gpu = self.tray.gpu_indices[DEVICE]
        self.uuid = self.rack.gpus[self.gpu].id.uuid
        if lose_before_open:
            self.lose()
        self.spy = Recorder(self.tray)
        self.collector = NvmlCollector(self.spy)

    def lose(self) -> None:
        self.rack.sync()
        self.rack.lose_gpu(self.gpu)

    def tick(self, second: int) -> Any:
        self.clock.advance(START + second - self.clock.now())
        return self.collector.poll(round(self.clock.now() * 1000))

    def handle_calls(self) -> int:
        """nvmlDeviceGetHandleByIndex calls for the lost GPU's NVML index so far."""
        return sum(1 for n, args in self.spy.calls if n == "nvmlDeviceGetHandleByIndex" and args == (DEVICE,))


def probe_seconds(lost_at: int, until: int) -> list[int]:
    """When a 5 s back-off doubling to 300 s probes, counted by hand from the tick the loss was seen."""
    at, wait, out = lost_at + 5, 5, []
    while at <= until:
        out.append(at)
        wait = min(wait * 2, 300)
        at += wait
    return out


def test_lost_gpu_is_probed_on_a_back_off_and_comes_back_under_the_same_key():
    t = OneTray()
    before = gpu_rows(t.tick(1))[t.gpu]
    assert before["state"] == GpuState.OK and before["uuid"] == t.uuid
    t.lose()
    frame = t.tick(2)
    assert gpu_rows(frame)[t.gpu]["state"] == GpuState.LOST
    assert [e["gpu"] for e in events(frame, EventKind.GPU_LOST)] == [t.gpu]
    calls_at_loss = t.handle_calls()
    lost_frames = [t.tick(s) for s in range(3, 61)]
    assert all(gpu_rows(f)[t.gpu]["state"] == GpuState.LOST for f in lost_frames)
    assert not any(events(f, EventKind.GPU_LOST) or events(f, EventKind.GPU_RECOVERED) for f in lost_frames)
    # No probing storm: one handle call per back-off step (7, 17, 37 s), not one per tick.
    assert t.handle_calls() - calls_at_loss == len(probe_seconds(2, 60)) == 3

    t.rack.recover_gpu(t.gpu)  # the fault clears; the next probe is due at 77 s
    next_probe = probe_seconds(2, 1000)[3]
    waiting = [t.tick(s) for s in range(61, next_probe)]
    assert all(gpu_rows(f)[t.gpu]["state"] == GpuState.LOST for f in waiting)
    back = t.tick(next_probe)
    row = gpu_rows(back)[t.gpu]
    assert (row["state"], row["gpu"], row["uuid"], row["tray"]) == (
        GpuState.OK,
        t.gpu,
        t.uuid,
        before["tray"],
    )
    assert row["power_mw"] is not None and row["temp_gpu_c"] is not None
    assert [(e["gpu"], e["kind"]) for e in events(back)] == [(t.gpu, EventKind.GPU_RECOVERED)]
    assert len(link_rows(back, t.gpu)) == t.collector.gpus[DEVICE].nvlink_count > 0
    after = t.tick(next_probe + 1)
    assert gpu_rows(after)[t.gpu]["state"] == GpuState.OK and not events(after, EventKind.GPU_RECOVERED)

    t.rack.emit(t.gpu, pynvml.nvmlEventTypeXidCriticalError, 48, "injected by the test")
    xids = events(t.tick(next_probe + 2), EventKind.XID)
    assert [(e["gpu"], e["code"]) for e in xids] == [(t.gpu, 48)]
    t.collector.close()


def test_gpu_lost_at_open_recovers_with_its_real_uuid_and_keeps_its_xids():
    t = OneTray(lose_before_open=True)
    assert t.collector.gpus[DEVICE].uuid.startswith("GPU-unknown-")
    first = t.tick(1)
    assert gpu_rows(first)[t.gpu]["state"] == GpuState.LOST
    assert [e["gpu"] for e in events(first, EventKind.GPU_LOST)] == [t.gpu]
    t.rack.recover_gpu(t.gpu)
    assert gpu_rows(t.tick(5))[t.gpu]["state"] == GpuState.LOST  # the first probe is due 5 s after 1 s
    back = t.tick(6)
    row = gpu_rows(back)[t.gpu]
    assert (row["state"], row["gpu"], row["uuid"]) == (GpuState.OK, t.gpu, t.uuid)
    assert [e["gpu"] for e in events(back, EventKind.GPU_RECOVERED)] == [t.gpu]
    assert t.collector.gpus[DEVICE].uuid == t.uuid and link_rows(back, t.gpu)

    t.rack.emit(t.gpu, pynvml.nvmlEventTypeXidCriticalError, 79, "injected by the test")
    xids = events(t.tick(7), EventKind.XID)
    assert [(e["gpu"], e["code"]) for e in xids] == [(t.gpu, 79)]
    t.collector.close()


def test_another_gpu_answering_at_the_lost_index_is_not_taken_for_it():
    t = OneTray()
    t.tick(1)
    t.lose()
    t.tick(2)
    t.rack.recover_gpu(t.gpu)
    sim = t.rack.gpus[t.gpu]
    sim.id = dataclasses.replace(sim.id, uuid="GPU-00000000-0000-0000-0000-000000000000")  # swapped board
    frames = [t.tick(s) for s in range(3, 40)]
    assert all(gpu_rows(f)[t.gpu]["state"] == GpuState.LOST for f in frames)
    assert not any(events(f, EventKind.GPU_RECOVERED) for f in frames)
    t.collector.close()
