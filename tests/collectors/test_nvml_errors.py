"""The NVML collector's per-call and per-field error policy, with errors injected into a simulated tray."""

from __future__ import annotations

import pynvml
import pytest

from collectors.clock import SimClock
from collectors.nvml import NvmlCollector, handle_key
from collectors.nvml_fields import FI_MEMORY_TEMP, FI_NVLINK_STATE, FI_NVLINK_SYMBOL_ERRORS, FI_NVLINK_TX
from collectors.rack import LINKS_PER_GPU
from collectors.sim import SimRack
from storage.schemas import EventKind, GpuState
from tests.collectors.test_nvml_collector import START, Recorder, events, gpu_rows, link_rows

VICTIM = 1  # NVML index on the tray that gets the errors

CALL_COLUMNS: dict[str, tuple[str, ...]] = {
    "nvmlDeviceGetUtilizationRates": ("util_gpu_pct", "util_mem_pct"),
    "nvmlDeviceGetMemoryInfo": ("mem_used_mib",),
    "nvmlDeviceGetPowerUsage": ("power_mw",),
    "nvmlDeviceGetTotalEnergyConsumption": ("energy_mj",),
    "nvmlDeviceGetTemperatureV": ("temp_gpu_c",),
    "nvmlDeviceGetMarginTemperature": ("temp_margin_c",),
    "nvmlDeviceGetClockInfo": ("sm_clock_mhz", "mem_clock_mhz"),
    "nvmlDeviceGetCurrentClocksEventReasons": ("clocks_event_reasons",),
    "nvmlDeviceGetPerformanceState": ("pstate",),
    "nvmlDeviceGetTotalEccErrors": ("ecc_corrected", "ecc_uncorrected"),
    "nvmlDeviceGetFieldValues": ("temp_mem_c", "nvlink_tx_kib", "nvlink_rx_kib", "nvlink_up"),
    "nvmlDeviceGetComputeRunningProcesses": (),
}
"""Every per-GPU call the collector makes each tick, and the gpu columns it fills."""

CALLS_PER_TICK = {"nvmlDeviceGetClockInfo": 2, "nvmlDeviceGetTotalEccErrors": 2}


class TrayUnderTest:
    """One simulated tray, its collector polling every tick (processes too), calls recorded."""

    def __init__(self) -> None:
        self.clock = SimClock(start=START)
        self.rack = SimRack(seed=11, clock=self.clock)
        self.tray = self.rack.trays[3]
        self.spy = Recorder(self.tray)
        self.collector = NvmlCollector(self.spy, name="tray-04", process_every=1)
        self.victim = self.collector.gpus[VICTIM].gpu
        self.handle = self.tray.nvmlDeviceGetHandleByIndex(VICTIM)
        self.t = 0

    def tick(self):
        self.t += 1
        self.clock.advance(1.0)
        return self.collector.poll(round(self.clock.now() * 1000))

    def calls_on_victim(self, name: str) -> int:
        return self.spy.calls_on(name, self.handle)

    def requests_of(self, handle):
        """The field lists the collector asked of one GPU per tick (the static read at open excluded)."""
        key = handle_key(handle)
        asked = [
            a[1] for n, a in self.spy.calls if n == "nvmlDeviceGetFieldValues" and handle_key(a[0]) == key
        ]
        return asked[1:]

    def close(self) -> None:
        self.collector.close()


@pytest.fixture
def tray():
    t = TrayUnderTest()
    yield t
    t.close()


def victim_procs(frame, gpu):
    return [p for p in frame.table("processes").to_pylist() if p["gpu"] == gpu]


@pytest.mark.parametrize("call", sorted(CALL_COLUMNS))
def test_not_supported_is_remembered_and_never_asked_again(tray, call):
    tray.tray.inject_error(call, pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=VICTIM)
    first = tray.tick()
    asked = tray.calls_on_victim(call)
    assert asked >= 1
    second, third = tray.tick(), tray.tick()
    assert tray.calls_on_victim(call) == asked  # not asked again
    for frame in (first, second, third):
        rows = gpu_rows(frame)
        assert rows[tray.victim]["state"] == GpuState.OK  # unsupported is not an error
        for column in CALL_COLUMNS[call]:
            if call == "nvmlDeviceGetTemperatureV":
                # Drivers without the versioned call still answer the deprecated one.
                assert rows[tray.victim][column] is not None
            else:
                assert rows[tray.victim][column] is None, column
            assert all(row[column] is not None for gpu, row in rows.items() if gpu != tray.victim)
    if call == "nvmlDeviceGetComputeRunningProcesses":
        assert not victim_procs(third, tray.victim)
        assert victim_procs(third, tray.collector.gpus[0].gpu)
    if call == "nvmlDeviceGetFieldValues":
        assert all(r["tx_kib"] is None and r["state"] is None for r in link_rows(third, tray.victim))


def test_both_temperature_calls_unsupported_leave_the_column_null(tray):
    tray.tray.inject_error("nvmlDeviceGetTemperatureV", pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, gpu=VICTIM)
    tray.tray.inject_error("nvmlDeviceGetTemperature", pynvml.NVML_ERROR_NO_PERMISSION, gpu=VICTIM)
    tray.tick()
    frame = tray.tick()
    assert gpu_rows(frame)[tray.victim]["temp_gpu_c"] is None
    assert tray.calls_on_victim("nvmlDeviceGetTemperature") == 1


@pytest.mark.parametrize("call", sorted(CALL_COLUMNS))
def test_gpu_is_lost_on_any_call_marks_only_that_gpu(tray, call):
    tray.tray.inject_error(call, pynvml.NVML_ERROR_GPU_IS_LOST, gpu=VICTIM)
    first = tray.tick()
    rows = gpu_rows(first)
    assert rows[tray.victim]["state"] == GpuState.LOST
    assert all(rows[tray.victim][c] is None for c in ("power_mw", "temp_gpu_c", "sm_clock_mhz", "nvlink_up"))
    assert rows[tray.victim]["uuid"] == tray.collector.gpus[VICTIM].uuid
    lost = events(first, EventKind.GPU_LOST)
    assert [e["gpu"] for e in lost] == [tray.victim] and call in lost[0]["detail"]
    assert not link_rows(first, tray.victim) and not victim_procs(first, tray.victim)
    asked = sum(tray.calls_on_victim(name) for name in CALL_COLUMNS)
    second = tray.tick()
    assert sum(tray.calls_on_victim(name) for name in CALL_COLUMNS) == asked  # never called again
    assert gpu_rows(second)[tray.victim]["state"] == GpuState.LOST
    assert not events(second, EventKind.GPU_LOST)
    others = [row for gpu, row in gpu_rows(second).items() if gpu != tray.victim]
    assert len(others) == 3 and all(r["state"] == GpuState.OK and r["power_mw"] for r in others)


@pytest.mark.parametrize("call", sorted(CALL_COLUMNS))
def test_unknown_error_is_retried_and_recovers_next_tick(tray, call):
    times = CALLS_PER_TICK.get(call, 1)
    tray.tray.inject_error(call, pynvml.NVML_ERROR_UNKNOWN, gpu=VICTIM, times=times)
    first = tray.tick()
    rows = gpu_rows(first)
    assert rows[tray.victim]["state"] == GpuState.ERROR
    for column in CALL_COLUMNS[call]:
        assert rows[tray.victim][column] is None, column
    assert rows[tray.victim]["power_mw"] is not None or call == "nvmlDeviceGetPowerUsage"
    second = tray.tick()
    again = gpu_rows(second)[tray.victim]
    assert again["state"] == GpuState.OK
    for column in CALL_COLUMNS[call]:
        assert again[column] is not None, column
    if call == "nvmlDeviceGetComputeRunningProcesses":
        assert not victim_procs(first, tray.victim) and victim_procs(second, tray.victim)
    if call == "nvmlDeviceGetFieldValues":
        assert [r["tx_kib"] for r in link_rows(first, tray.victim)] == [None] * LINKS_PER_GPU
        assert all(r["tx_kib"] is not None for r in link_rows(second, tray.victim))


@pytest.mark.parametrize(
    "code", [pynvml.NVML_ERROR_TIMEOUT, pynvml.NVML_ERROR_NO_DATA, pynvml.NVML_ERROR_NOT_READY]
)
def test_transient_codes_are_retried(tray, code):
    tray.tray.inject_error("nvmlDeviceGetPowerUsage", code, gpu=VICTIM, times=1)
    assert gpu_rows(tray.tick())[tray.victim]["power_mw"] is None
    assert gpu_rows(tray.tick())[tray.victim]["power_mw"] is not None


def test_field_not_supported_is_dropped_from_the_request(tray):
    tray.tray.inject_field_error(FI_NVLINK_SYMBOL_ERRORS, pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=VICTIM)
    first = tray.tick()
    assert [r["symbol_errors"] for r in link_rows(first, tray.victim)] == [None] * LINKS_PER_GPU
    assert all(r["recovery"] is not None for r in link_rows(first, tray.victim))
    assert gpu_rows(first)[tray.victim]["state"] == GpuState.OK
    tray.tick()
    victim_requests = tray.requests_of(tray.handle)
    assert len(victim_requests) == 2
    assert any(fid == FI_NVLINK_SYMBOL_ERRORS for fid, _ in victim_requests[0])
    assert not any(fid == FI_NVLINK_SYMBOL_ERRORS for fid, _ in victim_requests[1])
    sibling = tray.tray.nvmlDeviceGetHandleByIndex(0)
    assert any(fid == FI_NVLINK_SYMBOL_ERRORS for fid, _ in tray.requests_of(sibling)[-1])
    assert all(r["symbol_errors"] is None for r in link_rows(tray.tick(), tray.victim))


def test_memory_temperature_field_unsupported_nulls_only_that_column(tray):
    tray.tray.inject_field_error(FI_MEMORY_TEMP, pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=VICTIM)
    tray.tick()
    row = gpu_rows(tray.tick())[tray.victim]
    assert row["temp_mem_c"] is None and row["nvlink_tx_kib"] is not None and row["state"] == GpuState.OK


def test_field_retry_error_nulls_this_tick_only(tray):
    tray.tray.inject_field_error(FI_NVLINK_TX, pynvml.NVML_ERROR_UNKNOWN, gpu=VICTIM)
    first = gpu_rows(tray.tick())[tray.victim]
    assert first["nvlink_tx_kib"] is None and first["nvlink_rx_kib"] is not None
    assert first["state"] == GpuState.OK  # a field, not a whole-device call
    tray.tray.clear_errors()
    frame = tray.tick()
    assert gpu_rows(frame)[tray.victim]["nvlink_tx_kib"] is not None
    assert all(r["tx_kib"] is not None for r in link_rows(frame, tray.victim))


def test_link_state_field_unsupported_falls_back_to_the_link_state_call(tray):
    tray.tray.inject_field_error(FI_NVLINK_STATE, pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=VICTIM)
    tray.tick()
    frame = tray.tick()
    assert tray.calls_on_victim("nvmlDeviceGetNvLinkState") == LINKS_PER_GPU
    assert [r["state"] for r in link_rows(frame, tray.victim)] == [1] * LINKS_PER_GPU
    assert gpu_rows(frame)[tray.victim]["nvlink_up"] == LINKS_PER_GPU


def test_field_gpu_is_lost_marks_the_gpu_lost(tray):
    tray.tray.inject_field_error(FI_NVLINK_TX, pynvml.NVML_ERROR_GPU_IS_LOST, gpu=VICTIM)
    frame = tray.tick()
    assert gpu_rows(frame)[tray.victim]["state"] == GpuState.LOST
    assert [e["gpu"] for e in events(frame, EventKind.GPU_LOST)] == [tray.victim]


def test_event_wait_errors_never_stop_the_tick(tray):
    tray.tray.inject_error("nvmlEventSetWait", pynvml.NVML_ERROR_UNKNOWN, times=1)
    rows = gpu_rows(tray.tick())
    assert all(r["state"] == GpuState.OK for r in rows.values())
