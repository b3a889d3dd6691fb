"""Each scenario is healthy before `fault_at` and shows its fault on the GPU/tray/link/instance it names."""

from __future__ import annotations

import pynvml
import pytest

from collectors.clock import SimClock
from collectors.rack import gpu_place
from collectors.sim import SCENARIOS, SimRack, SimTray
from collectors.sim.gpu import HW_POWER_BRAKE, HW_SLOWDOWN, HW_THERMAL, SW_THERMAL

from .conftest import T0

FAULT_AT = 20.0


def make(scenario: str, seed: int = 9, **options: object) -> SimRack:
    return SimRack(seed=seed, scenario=scenario, clock=SimClock(T0), fault_at=FAULT_AT, **options)


def tokens_per_s(rack: SimRack, instances: list[int], seconds: float) -> float:
    start = sum(rack.workload.instances[i].generation_tokens for i in instances)
    rack.advance_to(rack.time + seconds)
    return (sum(rack.workload.instances[i].generation_tokens for i in instances) - start) / seconds


def test_registry_names_and_descriptions():
    assert set(SCENARIOS) == {
        "steady",
        "thermal",
        "nvlink-flap",
        "gpu-lost",
        "straggler",
        "endpoint-down",
        "restart",
    }
    assert all(cls.description for cls in SCENARIOS.values())
    with pytest.raises(ValueError, match="unknown scenario 'nope'; choose one of: steady"):
        SimRack(scenario="nope", clock=SimClock(T0))


def test_faults_are_deterministic_per_seed_and_named():
    for name in SCENARIOS:
        a, b = make(name, seed=3).scenario.fault, make(name, seed=3).scenario.fault
        assert a == b
        if name != "steady":
            assert a is not None and a.summary and a.tray is not None
    assert {make("gpu-lost", seed=s).scenario.fault.gpu for s in range(6)} != {
        make("gpu-lost").scenario.fault.gpu
    }


def test_steady_serves_the_mlperf_rate():
    rack = make("steady")
    rack.advance_to(T0 + 5)
    rate = tokens_per_s(rack, list(range(72)), 60)
    assert 1.05e6 < rate < 1.15e6  # ~15.2 k tok/s per GPU
    assert not rack.events or {e.event_type for e in rack.events} == {pynvml.nvmlEventTypeSingleBitEccError}


def test_thermal_throttles_one_tray():
    rack = make("thermal")
    fault = rack.scenario.fault
    on_tray = [g for g in rack.gpus if g.id.tray == fault.tray]
    before = tokens_per_s(rack, [rack.workload.instance_of_gpu[g.id.index] for g in on_tray], FAULT_AT - 1)
    assert all(g.reasons == 0 and g.sm_mhz == 2070 for g in on_tray)
    rack.advance_to(T0 + FAULT_AT + 240)
    for g in on_tray:
        assert g.reasons & (SW_THERMAL | HW_THERMAL) and g.sm_mhz < 1700 and g.margin < 5
    assert any(g.reasons & HW_SLOWDOWN and g.reasons & HW_THERMAL for g in on_tray)
    after = tokens_per_s(rack, [rack.workload.instance_of_gpu[g.id.index] for g in on_tray], 30)
    assert after < 0.8 * before
    assert all(g.reasons == 0 for g in rack.gpus if g.id.tray != fault.tray)


def test_nvlink_flap_then_down_moves_traffic():
    rack = make("nvlink-flap")
    fault = rack.scenario.fault
    tray = rack.tray_of(fault.tray)
    tray.nvmlInit()
    h = tray.nvmlDeviceGetHandleByIndex(rack.gpus[fault.gpu].id.device)
    link = fault.link

    def read(field: int, scope: int) -> int:
        (v,) = tray.nvmlDeviceGetFieldValues(h, [(field, scope)])
        return v.value.uiVal if field == pynvml.NVML_FI_DEV_NVLINK_GET_STATE else v.value.ullVal

    rack.advance_to(T0 + FAULT_AT - 1)
    healthy_symbols = read(pynvml.NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS, link)
    rack.advance_to(T0 + FAULT_AT + 30)
    assert read(pynvml.NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS, link) > healthy_symbols + 1000
    assert read(pynvml.NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_SUCCESSFUL_EVENTS, link) > 0
    assert read(pynvml.NVML_FI_DEV_NVLINK_GET_STATE, link) == pynvml.NVML_NVLINK_STATE_ACTIVE
    rack.advance_to(T0 + FAULT_AT + 60)
    assert read(pynvml.NVML_FI_DEV_NVLINK_GET_STATE, link) == pynvml.NVML_NVLINK_STATE_INACTIVE
    assert tray.nvmlDeviceGetNvLinkState(h, link) == pynvml.NVML_FEATURE_DISABLED
    assert read(pynvml.NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_FAILED_EVENTS, link) == 1
    assert [(e.gpu, e.data) for e in rack.events if e.event_type == pynvml.nvmlEventTypeXidCriticalError] == [
        (fault.gpu, 74)
    ]
    other = (link + 1) % 18
    tx = pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX
    down_before, other_before, total_before = read(tx, link), read(tx, other), read(tx, 0xFFFFFFFF)
    rack.advance_to(rack.time + 10)
    assert read(tx, link) == down_before  # a down link carries nothing
    other_gain = read(tx, other) - other_before
    total_gain = read(tx, 0xFFFFFFFF) - total_before
    assert other_gain == pytest.approx(total_gain / 17, rel=0.1)  # its share moved to the other 17


def test_gpu_lost_answers_gpu_is_lost_and_its_instance_stops():
    rack = make("gpu-lost")
    fault = rack.scenario.fault
    tray = rack.tray_of(fault.tray)
    tray.nvmlInit()
    device = rack.gpus[fault.gpu].id.device
    h = tray.nvmlDeviceGetHandleByIndex(device)
    assert (fault.tray, rack.gpus[fault.gpu].id.module) == gpu_place(fault.gpu)
    rack.advance_to(T0 + FAULT_AT + 1)
    for call in (
        tray.nvmlDeviceGetPowerUsage,
        tray.nvmlDeviceGetUUID,
        tray.nvmlDeviceGetComputeRunningProcesses,
    ):
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call(h)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        tray.nvmlDeviceGetHandleByIndex(device)
    others = [tray.nvmlDeviceGetHandleByIndex(i) for i in range(4) if i != device]
    assert all(tray.nvmlDeviceGetPowerUsage(o) > 0 for o in others)
    assert tokens_per_s(rack, [fault.instance], 10) == 0
    assert rack.workload.instances[fault.instance].waiting > 0
    assert [(e.gpu, e.data) for e in rack.events if e.data] == [(fault.gpu, 79)]


def test_straggler_drags_its_instance():
    rack = make("straggler", tp=4)
    fault = rack.scenario.fault
    inst = rack.workload.instances[fault.instance]
    assert fault.gpu in inst.gpus
    before = tokens_per_s(rack, [fault.instance], FAULT_AT - 1)
    rack.advance_to(T0 + FAULT_AT + 5)
    slow = rack.gpus[fault.gpu]
    assert slow.reasons & HW_SLOWDOWN and slow.reasons & HW_POWER_BRAKE and slow.sm_mhz < 1200
    after = tokens_per_s(rack, [fault.instance], 20)
    assert after < 0.6 * before
    for g in inst.gpus:
        if g != fault.gpu:  # the others wait for it: full clocks, lower power
            assert rack.gpus[g].sm_mhz == 2070 and rack.gpus[g].power_w < 0.75 * rack.gpus[g].busy_w
    assert inst.itl.quantile(0.5) > 0.03


def test_endpoint_down_stops_answering_and_idles_its_gpus():
    rack = make("endpoint-down")
    fault = rack.scenario.fault
    inst = rack.workload.instances[fault.instance]
    rack.advance_to(T0 + FAULT_AT - 1)
    assert inst.answering
    rack.advance_to(T0 + FAULT_AT + 30)
    assert not inst.answering and tokens_per_s(rack, [fault.instance], 5) == 0
    assert all(rack.gpus[g].util_gpu == 0 and not rack.gpus[g].lost for g in inst.gpus)
    assert sum(i.answering for i in rack.workload.instances) == 71


def _link_tx_kib(tray: SimTray, h: object) -> int:
    """The sum of one GPU's 18 per-link DATA TX counters (KiB), as NVML answers them."""
    request = [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, k) for k in range(18)]
    return sum(v.value.ullVal for v in tray.nvmlDeviceGetFieldValues(h, request))


def test_restart_zeroes_the_trays_nvml_counters_then_its_servers_counters():
    rack = make("restart")
    scenario = rack.scenario
    fault = scenario.fault
    tray = rack.tray_of(fault.tray)
    tray.nvmlInit()
    handles = [tray.nvmlDeviceGetHandleByIndex(d) for d in range(4)]
    gpus = [tray.gpu_indices[d] for d in range(4)]
    other = rack.tray_of(fault.tray % 18 + 1)
    other.nvmlInit()
    other_h = other.nvmlDeviceGetHandleByIndex(0)
    servers = [rack.workload.instances[i] for i in scenario.instances]
    assert sorted(g for s in servers for g in s.gpus) == sorted(gpus)
    assert all(s.name in fault.summary for s in servers) and f"compute tray {fault.tray}" in fault.summary
    rack.gpus[gpus[0]].ecc_corrected = 3  # errors counted since this driver load
    ecc = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
    aggregate = tray.nvmlDeviceGetTotalEccErrors(handles[0], ecc, pynvml.NVML_AGGREGATE_ECC)

    rack.advance_to(T0 + FAULT_AT - 1)
    energy = [tray.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles]
    links = [_link_tx_kib(tray, h) for h in handles]
    other_energy = other.nvmlDeviceGetTotalEnergyConsumption(other_h)
    assert min(energy) > 1e9 and min(links) > 1e9 and all(s.answering for s in servers)

    # Servers stopped: no page, no work, no process holding the GPUs; the driver still counts.
    rack.advance_to(T0 + FAULT_AT + 1)
    assert not any(s.answering for s in servers)
    assert all(tray.nvmlDeviceGetComputeRunningProcesses(h) == [] for h in handles)
    assert all(tray.nvmlDeviceGetTotalEnergyConsumption(h) > e for h, e in zip(handles, energy, strict=True))

    # The driver reload: energy counts again from 0 (the integral of power since), links and volatile
    # ECC from 0, the aggregate ECC count keeps what it had; the next tray never notices.
    rack.advance_to(T0 + FAULT_AT + scenario.reload_after_s)
    powers: list[list[int]] = []
    for t in range(int(scenario.back_after_s - scenario.reload_after_s)):
        if t:
            rack.advance_to(rack.time + 1)
        powers.append([tray.nvmlDeviceGetPowerUsage(h) for h in handles])
    for d, h in enumerate(handles):
        integral = sum(p[d] for p in powers)  # mJ: one second at each step's power
        assert tray.nvmlDeviceGetTotalEnergyConsumption(h) == pytest.approx(integral, rel=0.001)
        assert _link_tx_kib(tray, h) == 0  # the servers are still down: nothing carried since
    assert tray.nvmlDeviceGetTotalEccErrors(handles[0], ecc, pynvml.NVML_VOLATILE_ECC) == 0
    assert tray.nvmlDeviceGetTotalEccErrors(handles[0], ecc, pynvml.NVML_AGGREGATE_ECC) == aggregate
    assert other.nvmlDeviceGetTotalEnergyConsumption(other_h) > other_energy

    # Servers back: their counters count only what they made since, by the sim's lifetime truth.
    made_before = [s.generated_lifetime for s in servers]
    rack.advance_to(T0 + FAULT_AT + 20)
    assert all(s.answering for s in servers)
    for s, before in zip(servers, made_before, strict=True):
        assert 0 < s.generation_tokens == s.generated_lifetime - before
        assert s.ttft.count == s.requests_ok > 0
    assert all(_link_tx_kib(tray, h) > 0 for h in handles)
    assert all(tray.nvmlDeviceGetComputeRunningProcesses(h) for h in handles)
