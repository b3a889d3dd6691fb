"""The NVML collector over the simulated rack: every scenario, placement, processes and the XID drain."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pynvml
import pytest

from collectors.clock import SimClock
from collectors.nvml import NvmlCollector, NvmlUnavailable, handle_key, nvml_available
from collectors.rack import GPUS, LINKS_PER_GPU, gpu_index
from collectors.sim import SimRack
from monitor.view.builder import build_snapshot
from storage.frame import Frame, merge_frames
from storage.schemas import EventKind, GpuState

START = 1_700_000_000.0
FAULT_AT = 60.0  # the sim's default: healthy first, then the fault
SW_POWER_CAP = pynvml.nvmlClocksEventReasonSwPowerCap
HW_SLOWDOWN = pynvml.nvmlClocksEventReasonHwSlowdown
THERMAL_BITS = (
    pynvml.nvmlClocksEventReasonHwSlowdown
    | pynvml.nvmlClocksEventReasonHwThermalSlowdown
    | pynvml.nvmlClocksEventReasonSwThermalSlowdown
)


class Recorder:
    """A pass-through over a pynvml-compatible module that records every nvml* call (name, args).

    Not a mock: every call goes to the real simulated tray; the record lets tests check which calls the
    collector made, with which arguments.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not (name.startswith("nvml") and callable(attr)):
            return attr

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            return attr(*args, **kwargs)

        return recorded

    def calls_on(self, name: str, handle: Any) -> int:
        """How many times `name` was called with `handle` as its first argument."""
        key = handle_key(handle)
        return sum(1 for n, args in self.calls if n == name and args and handle_key(args[0]) == key)


class RackUnderTest:
    """A simulated rack with one NvmlCollector per tray, as 18 tray hosts would run them."""

    def __init__(self, scenario: str = "steady", seed: int = 7, process_every: int = 5) -> None:
        self.clock = SimClock(start=START)
        self.rack = SimRack(seed=seed, scenario=scenario, clock=self.clock)
        self.collectors = [
            NvmlCollector(tray, name=f"tray-{n:02d}", process_every=process_every)
            for n, tray in enumerate(self.rack.trays, start=1)
        ]

    def tick_at(self, elapsed: float) -> Frame:
        """Move the clock to `elapsed` seconds after the start and poll every tray."""
        self.clock.advance(START + elapsed - self.clock.now())
        ts = round(self.clock.now() * 1000)
        return merge_frames(ts, [c.poll(ts) for c in self.collectors])

    def close(self) -> None:
        for c in self.collectors:
            c.close()


@pytest.fixture
def make_rack():
    racks: list[RackUnderTest] = []

    def make(scenario: str = "steady", **kwargs: Any) -> RackUnderTest:
        racks.append(RackUnderTest(scenario, **kwargs))
        return racks[-1]

    yield make
    for r in racks:
        r.close()


def gpu_rows(frame: Frame) -> dict[int, dict[str, Any]]:
    """The gpu table of a frame by rack index."""
    return {row["gpu"]: row for row in frame.table("gpu").to_pylist()}


def events(frame: Frame, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in frame.table("events").to_pylist() if kind is None or e["kind"] == kind]


def link_rows(frame: Frame, gpu: int) -> list[dict[str, Any]]:
    return sorted((r for r in frame.table("nvlink").to_pylist() if r["gpu"] == gpu), key=lambda r: r["link"])


def test_steady_rack_gives_72_plausible_ok_rows(make_rack):
    r = make_rack("steady")
    frame = r.tick_at(0.0)
    rows = gpu_rows(frame)
    assert sorted(rows) == list(range(GPUS))
    for gpu, row in rows.items():
        assert row["state"] == GpuState.OK
        assert row["tray"] == gpu // 4 + 1
        assert row["uuid"].startswith("GPU-")
        assert row["mem_total_mib"] == 284_208
        assert 0 < row["mem_used_mib"] <= row["mem_total_mib"]
        assert row["power_limit_mw"] == 1_400_000
        assert 150_000 <= row["power_mw"] <= 1_400_000
        assert 20 <= row["temp_gpu_c"] <= 90 and 20 <= row["temp_mem_c"] <= 95
        assert 0 < row["temp_margin_c"] < 70
        assert 100 <= row["sm_clock_mhz"] <= 2070
        assert row["mem_clock_mhz"] == 3996
        assert 0 <= row["util_gpu_pct"] <= 100 and 0 <= row["util_mem_pct"] <= 100
        assert row["pstate"] == 0
        assert row["energy_mj"] > 0
        assert row["ecc_corrected"] >= 0 and row["ecc_uncorrected"] >= 0
        assert row["nvlink_up"] == LINKS_PER_GPU
        assert row["nvlink_tx_kib"] > 0 and row["nvlink_rx_kib"] > 0
        assert row["clocks_event_reasons"] is not None
    assert len({row["uuid"] for row in rows.values()}) == GPUS
    assert frame.table("nvlink").num_rows == GPUS * LINKS_PER_GPU
    assert not events(frame, EventKind.GPU_LOST)
    # A second tick: counters move forward, per-link counters add up to the aggregate.
    later = r.tick_at(10.0)
    again = gpu_rows(later)
    for gpu in (0, 37, 71):
        assert again[gpu]["energy_mj"] > rows[gpu]["energy_mj"]
        assert again[gpu]["nvlink_tx_kib"] >= rows[gpu]["nvlink_tx_kib"]
        links = link_rows(later, gpu)
        assert [link["state"] for link in links] == [pynvml.NVML_NVLINK_STATE_ACTIVE] * LINKS_PER_GPU
        assert sum(link["tx_kib"] for link in links) == pytest.approx(again[gpu]["nvlink_tx_kib"], rel=0.01)


def test_thermal_tray_shows_reason_bits_and_lower_clocks(make_rack):
    r = make_rack("thermal")
    tray = r.rack.scenario.fault.tray
    r.tick_at(0.0)
    frame = r.tick_at(FAULT_AT + 200.0)
    rows = gpu_rows(frame)
    hot = [gpu_index(tray, m) for m in range(1, 5)]
    cool = [g for g in rows if g not in hot]
    for gpu in hot:
        assert rows[gpu]["state"] == GpuState.OK
        assert rows[gpu]["clocks_event_reasons"] & THERMAL_BITS
    assert max(rows[g]["sm_clock_mhz"] for g in hot) < min(rows[g]["sm_clock_mhz"] for g in cool)
    assert max(rows[g]["temp_margin_c"] for g in hot) < min(rows[g]["temp_margin_c"] for g in cool)
    changed = {e["gpu"] for e in events(frame, EventKind.CLOCKS_EVENT) if e["code"] & THERMAL_BITS}
    assert changed == set(hot)
    hot_events = [e for e in events(frame, EventKind.CLOCKS_EVENT) if e["gpu"] in hot]
    assert all("Thermal" in e["detail"] or "Slowdown" in e["detail"] for e in hot_events)


def test_nvlink_flap_counters_climb_then_link_down(make_rack):
    r = make_rack("nvlink-flap")
    fault = r.rack.scenario.fault
    r.tick_at(0.0)
    during = [link_rows(r.tick_at(FAULT_AT + s), fault.gpu)[fault.link] for s in (10.0, 40.0)]
    assert during[1]["symbol_errors"] > during[0]["symbol_errors"]
    assert during[1]["recovery"] >= during[0]["recovery"] and during[1]["recovery"] > 0
    assert during[1]["state"] == pynvml.NVML_NVLINK_STATE_ACTIVE
    after = r.tick_at(FAULT_AT + 120.0)
    down = events(after, EventKind.LINK_DOWN)
    assert [(e["gpu"], e["link"], e["code"]) for e in down] == [(fault.gpu, fault.link, 0)]
    assert link_rows(after, fault.gpu)[fault.link]["state"] == pynvml.NVML_NVLINK_STATE_INACTIVE
    assert gpu_rows(after)[fault.gpu]["nvlink_up"] == LINKS_PER_GPU - 1
    assert not events(r.tick_at(FAULT_AT + 130.0), EventKind.LINK_DOWN)  # reported once


def test_gpu_lost_gives_one_lost_row_event_and_xid_while_others_stay_ok(make_rack):
    r = make_rack("gpu-lost")
    lost = r.rack.scenario.fault.gpu
    assert all(row["state"] == GpuState.OK for row in gpu_rows(r.tick_at(0.0)).values())
    frame = r.tick_at(FAULT_AT + 1.0)
    rows = gpu_rows(frame)
    assert rows[lost]["state"] == GpuState.LOST
    assert rows[lost]["power_mw"] is None and rows[lost]["temp_gpu_c"] is None
    assert [row["state"] for g, row in rows.items() if g != lost] == [GpuState.OK] * (GPUS - 1)
    assert [e["gpu"] for e in events(frame, EventKind.GPU_LOST)] == [lost]
    assert [(e["gpu"], e["code"]) for e in events(frame, EventKind.XID)] == [(lost, 79)]
    assert not link_rows(frame, lost)
    later = r.tick_at(FAULT_AT + 5.0)
    assert gpu_rows(later)[lost]["state"] == GpuState.LOST
    assert not events(later, EventKind.GPU_LOST)


def operator_label(rack_index: int) -> str:
    """'T04.G2' written out from the rack layout (4 GPUs a tray, both counted from 1), not via gpu_label."""
    return f"T{rack_index // 4 + 1:02d}.G{rack_index % 4 + 1}"


@pytest.mark.parametrize("scenario", ["gpu-lost", "nvlink-flap"])
def test_event_lines_name_their_gpu_once_and_details_say_what_happened(make_rack, scenario):
    r = make_rack(scenario)
    fault = r.rack.scenario.fault
    label, uuid = operator_label(fault.gpu), r.rack.gpus[fault.gpu].id.uuid
    frames = [r.tick_at(0.0), r.tick_at(FAULT_AT + 1.0), r.tick_at(FAULT_AT + 120.0)]
    rows = [e for frame in frames for e in events(frame) if e["gpu"] == fault.gpu]
    assert rows
    # The detail, as `monitor query` prints it beside its gpu column, says what happened, not where.
    assert all(label not in e["detail"] for e in rows)
    details = {e["kind"]: e["detail"] for e in rows}
    if scenario == "gpu-lost":
        assert details[EventKind.XID] == "Xid 79: GPU has fallen off the bus"
        assert details[EventKind.GPU_LOST].startswith(f"{uuid}: GPU_IS_LOST from ")  # which call saw it
    else:
        assert details[EventKind.XID] == "Xid 74: NVLINK Error"
        assert details[EventKind.LINK_DOWN] == f"NVLink {fault.link}: state 1 -> 0"
    assert len(details) == len(rows) == 2
    # The log line adds where: the label once.
    lines = [e.text for e in build_snapshot(frames).events if e.gpu == fault.gpu]
    assert len(lines) == len(rows)
    assert all(line.count(label) == 1 for line in lines), lines


def test_straggler_runs_lower_clocks_on_the_named_gpu(make_rack):
    r = make_rack("straggler")
    slow = r.rack.scenario.fault.gpu
    r.tick_at(0.0)
    rows = gpu_rows(r.tick_at(FAULT_AT + 30.0))
    others = [row["sm_clock_mhz"] for g, row in rows.items() if g != slow]
    assert rows[slow]["sm_clock_mhz"] < min(others)
    assert rows[slow]["clocks_event_reasons"] & HW_SLOWDOWN
    assert rows[slow]["state"] == GpuState.OK


def test_endpoint_down_leaves_the_gpus_healthy_but_idle(make_rack):
    r = make_rack("endpoint-down")
    fault = r.rack.scenario.fault
    r.tick_at(0.0)
    rows = gpu_rows(r.tick_at(FAULT_AT + 30.0))
    idle = r.rack.workload.instances[fault.instance].gpus
    assert all(rows[g]["state"] == GpuState.OK for g in rows)
    assert all(rows[g]["util_gpu_pct"] == 0 for g in idle)
    assert all(rows[g]["clocks_event_reasons"] & pynvml.nvmlClocksEventReasonGpuIdle for g in idle)


def test_static_facts_and_platform_placement():
    rack = SimRack(seed=3, clock=SimClock(start=START))
    with NvmlCollector(rack.trays[15], name="tray-16") as c:
        assert [g.tray for g in c.gpus] == [16] * 4
        assert sorted(g.gpu for g in c.gpus) == [gpu_index(16, m) for m in range(1, 5)]
        assert {g.placed_by for g in c.gpus} == {"platform"}
        for g in c.gpus:
            assert g.gpu == gpu_index(16, g.module)
            assert g.name == "NVIDIA GB300" and g.uuid.startswith("GPU-")
            assert g.mem_total_mib == 284_208 and g.power_limit_mw == 1_400_000
            assert (g.max_sm_clock_mhz, g.max_mem_clock_mhz) == (2070, 3996)
            assert g.nvlink_count == LINKS_PER_GPU
            assert g.slot == 25  # compute tray 16 sits in slot 25, below the switch trays
        assert len({g.serial for g in c.gpus}) == 2  # one serial per superchip
        assert sorted(g.pci_bus_id for g in c.gpus)[0] == "00000008:06:00.0"
        rows = gpu_rows(c.poll(1))
        assert {rows[g.gpu]["uuid"] for g in c.gpus} == {g.uuid for g in c.gpus}


def test_placement_by_configured_tray_else_a_board_without_platform_info():
    rack = SimRack(seed=3, clock=SimClock(start=START))
    tray = rack.trays[15]
    tray.inject_error("nvmlDeviceGetPlatformInfo", pynvml.NVML_ERROR_NOT_SUPPORTED)
    with NvmlCollector(tray, tray=5) as c:
        assert [(g.gpu, g.placed_by) for g in c.gpus] == [(gpu_index(5, i + 1), "config") for i in range(4)]
    with NvmlCollector(tray) as c:
        assert [(g.gpu, g.tray, g.placed_by) for g in c.gpus] == [(i, 0, "board") for i in range(4)]
        rows = gpu_rows(c.poll(1))
        assert set(rows) == {0, 1, 2, 3} and {r["tray"] for r in rows.values()} == {0}


def test_gpu_lost_before_open_takes_the_tray_its_siblings_report():
    rack = SimRack(seed=3, clock=SimClock(start=START))
    tray = rack.trays[8]
    tray.inject_error("nvmlDeviceGetPlatformInfo", pynvml.NVML_ERROR_GPU_IS_LOST, gpu=2)
    with NvmlCollector(tray) as c:
        # NVML index 2 is module 4 on a GB300 tray; its siblings hold modules 2, 1 and 3.
        assert c.gpus[2].placed_by == "config" and c.gpus[2].gpu == gpu_index(9, 4)
        frame = c.poll(1)
        assert gpu_rows(frame)[gpu_index(9, 4)]["state"] == GpuState.LOST
        assert [e["gpu"] for e in events(frame, EventKind.GPU_LOST)] == [gpu_index(9, 4)]


def test_bad_configuration_is_one_clear_error():
    rack = SimRack(seed=3, clock=SimClock(start=START))
    with pytest.raises(ValueError, match="compute tray 19"):
        NvmlCollector(rack.trays[0], tray=19)
    with pytest.raises(ValueError, match="process_every"):
        NvmlCollector(rack.trays[0], process_every=0)


def test_init_failure_is_nvml_unavailable_with_a_reason():
    rack = SimRack(seed=3, clock=SimClock(start=START))
    tray = rack.trays[0]
    tray.inject_error("nvmlInit", pynvml.NVML_ERROR_DRIVER_NOT_LOADED, times=2)
    with pytest.raises(NvmlUnavailable, match="driver is not loaded"):
        NvmlCollector(tray)
    assert "driver is not loaded" in nvml_available(tray)
    assert nvml_available(tray) is None


def test_real_pynvml_without_a_driver_says_why_in_one_line():
    if nvml_available() is None:
        pytest.skip("this host has a working NVIDIA driver")
    reason = nvml_available()
    assert "\n" not in reason and ("NVML" in reason or "driver" in reason)
    with pytest.raises(NvmlUnavailable):
        NvmlCollector()


def test_processes_every_n_ticks_with_names_and_mib(make_rack):
    r = make_rack("steady", process_every=3)
    sampled = [r.tick_at(float(t)).table("processes") for t in range(4)]
    assert [b.num_rows > 0 for b in sampled] == [True, False, False, True]
    procs = sampled[0].to_pylist()
    assert {p["gpu"] for p in procs} == set(range(GPUS))
    assert all(p["pid"] > 0 and p["used_mib"] > 0 and p["name"] for p in procs)


def test_event_drain_never_waits_and_takes_every_pending_event():
    rack = SimRack(seed=5, clock=SimClock(start=START))
    spy = Recorder(rack.trays[3])
    with NvmlCollector(spy) as c:
        rack.clock.advance(1.0)
        rack.advance_to(rack.clock.now())
        for gpu, xid in ((12, 74), (15, 48), (12, 145)):  # tray 4 holds rack GPUs 12..15
            rack.emit(gpu, pynvml.nvmlEventTypeXidCriticalError, xid, "injected by the test")
        frame = c.poll(round(rack.clock.now() * 1000))
        assert [(e["gpu"], e["code"]) for e in events(frame, EventKind.XID)] == [
            (12, 74),
            (15, 48),
            (12, 145),
        ]
        assert events(frame, EventKind.XID)[1]["detail"] == "Xid 48: Double Bit ECC Error"
        waits = [args for name, args in spy.calls if name == "nvmlEventSetWait"]
        assert len(waits) == 4  # three events, then Timeout
        assert not events(c.poll(round(rack.clock.now() * 1000) + 1000), EventKind.XID)
        waits = [args for name, args in spy.calls if name == "nvmlEventSetWait"]
        assert len(waits) == 5 and all(args[1] == 0 for args in waits)
    assert Counter(name for name, _ in spy.calls)["nvmlEventSetFree"] == 1
    assert Counter(name for name, _ in spy.calls)["nvmlShutdown"] >= 1
