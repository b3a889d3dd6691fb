"""An 8-GPU H100 HGX host without platform info (collectors.sim.hgx) under the real NVML collector and agent
page, and the tray index base of nvmlPlatformInfo.trayIndex.

Expected static facts are the figures of NVIDIA's `nvidia-smi -q -x` capture of an 8x H100 80GB HBM3 node
(k8s-test-infra testdata), written out here by hand, not read from the simulator's constants.
"""

from __future__ import annotations

import pytest

from collectors.agent_server import AgentPage
from collectors.clock import SimClock
from collectors.nvml import NvmlCollector
from collectors.nvml_static import read_facts
from collectors.rack import BOARD_TRAY, LINKS_PER_GPU, gpu_index, tray_from_platform
from collectors.sim import SimRack
from storage.schemas import EventKind, GpuState
from tests.collectors.test_nvml_collector import events, gpu_rows

START = 1_700_000_000.0
CAPTURE_BUSES = ["00000000:53:00.0", "00000000:64:00.0", "00000000:75:00.0", "00000000:86:00.0",
                 "00000000:97:00.0", "00000000:A8:00.0", "00000000:B9:00.0", "00000000:CA:00.0"]  # fmt: skip


def hgx(seed: int = 4) -> tuple[SimRack, object]:
    rack = SimRack(seed=seed, clock=SimClock(start=START))
    return rack, rack.hgx_host()


def test_static_facts_match_the_h100_capture_and_the_host_is_a_board():
    rack, host = hgx()
    with NvmlCollector(host, name="hgx-01") as c:
        assert [(g.nvml_index, g.gpu, g.tray, g.placed_by, g.label) for g in c.gpus] == [
            (i, i, BOARD_TRAY, "board", f"GPU{i}") for i in range(8)
        ]
        for g in c.gpus:
            assert g.name == "NVIDIA H100 80GB HBM3"
            assert (g.mem_total_mib, g.power_limit_mw) == (81_559, 700_000)
            assert (g.max_sm_clock_mhz, g.max_mem_clock_mhz) == (1_980, 2_619)
            assert g.nvlink_count == 18 and g.slot is None
        assert [g.pci_bus_id for g in c.gpus] == CAPTURE_BUSES
        assert len({g.serial for g in c.gpus}) == 8  # no superchip: one serial per board GPU
        # The GPUs behind it are the rack's: identities stay unique across the simulated rack.
        assert [g.uuid for g in c.gpus] == [rack.gpus[i].id.uuid for i in host.gpu_indices]


def test_platform_info_is_not_supported_and_read_facts_says_so():
    _rack, host = hgx()
    host.nvmlInit()
    try:
        facts = read_facts(host, 3)
    finally:
        host.nvmlShutdown()
    assert facts.platform is None and facts.raw_platform is None
    assert facts.platform_note == "NOT_SUPPORTED"


def test_rows_are_keyed_by_nvml_index_and_readings_stay_within_the_h100_limits():
    rack, host = hgx()
    with NvmlCollector(host) as c:
        for _ in range(5):
            rack.clock.advance(1.0)
            frame = c.poll(round(rack.clock.now() * 1000))
        rows = gpu_rows(frame)
        assert sorted(rows) == list(range(8))
        for row in rows.values():
            assert (row["state"], row["tray"]) == (GpuState.OK, BOARD_TRAY)
            assert 0 < row["power_mw"] <= row["power_limit_mw"] == 700_000
            assert 0 <= row["mem_used_mib"] <= row["mem_total_mib"] == 81_559
            assert 0 < row["sm_clock_mhz"] <= 1_980
        links = frame.table("nvlink").to_pydict()
        assert len(links["gpu"]) == 8 * LINKS_PER_GPU and set(links["gpu"]) == set(range(8))


def test_a_lost_gpu_is_its_nvml_index_and_the_others_keep_reporting():
    rack, host = hgx()
    victim = host.gpu_indices[5]  # NVML device 5 of the board
    with NvmlCollector(host) as c:
        rack.clock.advance(1.0)
        c.poll(round(rack.clock.now() * 1000))
        rack.sync()
        rack.lose_gpu(victim)
        rack.clock.advance(1.0)
        frame = c.poll(round(rack.clock.now() * 1000))
    rows = gpu_rows(frame)
    assert rows[5]["state"] == GpuState.LOST
    assert all(rows[i]["state"] == GpuState.OK for i in range(8) if i != 5)
    assert [e["gpu"] for e in events(frame, EventKind.GPU_LOST)] == [5]
    assert [(e["gpu"], e["code"]) for e in events(frame, EventKind.XID)] == [(5, 79)]


def test_a_tray_given_for_the_board_is_one_line():
    _rack, host = hgx()
    with pytest.raises(ValueError, match="this host has 8 GPUs") as err:
        NvmlCollector(host, tray=3)
    assert "\n" not in str(err.value)


def test_agent_page_over_the_board_names_each_gpu_by_nvml_index_with_tray_0():
    rack, host = hgx()
    with NvmlCollector(host) as c:
        page = AgentPage(c, clock=rack.clock, hostname="hgx-01").render().decode()
    info = [line for line in page.splitlines() if line.startswith("rackmon_gpu_info{")]
    assert len(info) == 8
    for i, line in enumerate(info):
        assert f'gpu="{i}"' in line and 'tray="0"' in line and f'module="{i + 1}"' in line


@pytest.mark.parametrize(("base", "tray_index", "tray"), [(0, 15, 16), (1, 15, 15), (0, 0, 1), (1, 18, 18)])
def test_tray_index_base(base: int, tray_index: int, tray: int) -> None:
    assert tray_from_platform(tray_index, base) == tray


@pytest.mark.parametrize(("base", "tray_index"), [(1, 0), (0, 18), (2, 3), (-1, 3)])
def test_tray_index_outside_the_rack_or_a_bad_base_is_refused(base: int, tray_index: int) -> None:
    with pytest.raises(ValueError):
        tray_from_platform(tray_index, base)


def test_collector_places_by_the_configured_tray_index_base():
    # The simulated tray 16 answers trayIndex 15 (counting from 0, like the GB300 capture's slot 25).
    rack = SimRack(seed=3, clock=SimClock(start=START))
    with NvmlCollector(rack.trays[15]) as c:
        assert {g.tray for g in c.gpus} == {16}
    with NvmlCollector(rack.trays[15], tray_index_base=1) as c:
        assert {g.tray for g in c.gpus} == {15}
        assert sorted(g.gpu for g in c.gpus) == [gpu_index(15, m) for m in range(1, 5)]
    with pytest.raises(ValueError, match="tray index base must be 0 or 1"):
        NvmlCollector(rack.trays[0], tray_index_base=2)


def test_trayindex_zero_counted_from_one_leaves_the_gpus_unplaced_with_the_reason():
    rack = SimRack(seed=3, clock=SimClock(start=START))
    tray = rack.trays[0]
    tray.nvmlInit()
    try:
        facts = read_facts(tray, 0, tray_index_base=1)
    finally:
        tray.nvmlShutdown()
    assert facts.raw_platform is not None and facts.raw_platform.tray_index == 0
    assert facts.platform is None
    assert facts.platform_note == "trayIndex 0 counted from 1 is not a compute tray 1..18"
