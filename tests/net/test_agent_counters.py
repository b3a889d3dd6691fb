"""The agent's counters across a device counter reset, its names table, and the names read back.

The agent serves a simulated tray over loopback HTTP; mid-run every GPU of the tray has its NVML
counters zeroed, as a driver reload or GPU reset does. Expected values come from the simulator's
ground truth (the traffic and energy it accumulated), never from the agent or the mapper.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from collectors import agent_names as names
from collectors.agent_server import AgentPage
from collectors.aiohttp_serving import agent_app
from collectors.clock import SimClock
from collectors.mappings import GpuPageMapper, XidTally, frame_to_agent_page
from collectors.nvml import NvmlCollector
from collectors.rack import LINKS_PER_GPU
from collectors.sim import SimRack
from collectors.sim.nvlink import total_modes_by_tray
from storage.increase import step
from tests.scrape.pagegen import agent_gpus, tray_frame

T0 = 1_760_000_000.0
TRAY = 16
TRAY_GPUS = range(4 * (TRAY - 1), 4 * TRAY)
TICK_S = 5.0
DOCS = Path(__file__).resolve().parents[2] / "docs" / "agent-metrics.md"
SEED = 4
LINK_READINGS = 1 if total_modes_by_tray("mixed", SEED)[TRAY] == "ok" else LINKS_PER_GPU
"""Integer readings per direction behind the tray's all-link counters: NVML's total, or (the default
rack's NOT_SUPPORTED trays) the sum of the 18 links, each truncated to a whole KiB."""

SeriesKey = tuple[str, frozenset[tuple[str, str]]]


def counter_samples(text: str) -> dict[SeriesKey, float]:
    """Every counter sample of a page, read with Prometheus' own parser."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        if family.type == "counter"
        for s in family.samples
    }


Truth = list[dict[int, tuple[float, float]]]
"""Per scrape, per rack GPU: NVLink data KiB carried (TX + RX) and energy used (mJ) since the sim started."""


def sim_truth(rack: SimRack) -> dict[int, tuple[float, float]]:
    carried = rack.nvlink_carried_kib()
    return {g: (carried[g], rack.gpus[g].energy_used_mj) for g in TRAY_GPUS}


async def scrape_over_reset(reset_after: int, ticks: int) -> tuple[list[str], Truth, Truth]:
    """Pages of tray 16's agent, one per tick, and the simulator's truth at each scrape and just after it.

    After scrape number `reset_after` the tray's driver reloads (GpuSim.reload_driver): every NVML counter
    of its GPUs starts again from 0, and what it counted since that scrape's reading (the last step's
    traffic, which reads see a step late) is gone for any reader: the truth just after the reload
    includes it, the truth at the scrape does not.
    """
    clock = SimClock(T0)
    rack = SimRack(seed=SEED, clock=clock)
    collector = NvmlCollector(rack.tray_of(TRAY), name="tray16")
    page = AgentPage(collector, clock=clock, hostname="gb300-t16", min_interval_s=0)
    pages: list[str] = []
    truth: Truth = []
    after: Truth = []
    try:
        async with TestClient(TestServer(agent_app(page))) as client:
            for tick in range(ticks):
                clock.advance(TICK_S)
                resp = await client.get("/metrics")
                assert resp.status == 200
                pages.append(await resp.text())
                with rack.lock:
                    rack.sync()
                    truth.append(sim_truth(rack))
                    if tick == reset_after:
                        for g in TRAY_GPUS:
                            rack.gpus[g].reload_driver()
                    after.append(sim_truth(rack))
    finally:
        collector.close()
    return pages, truth, after


async def test_exported_counters_never_go_backwards_over_a_device_reset() -> None:
    pages, _, _ = await scrape_over_reset(reset_after=4, ticks=9)
    before = counter_samples(pages[0])
    energy = [s for s in before if s[0] == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total"]
    assert energy and all(before[s] > 0 for s in energy)  # the page carries energy at all
    drops = []
    for text in pages[1:]:
        now = counter_samples(text)
        drops += [(key[0], before[key], value) for key, value in now.items() if value < before.get(key, 0)]
        before = now
    # Every counter: energy, ECC, NVLink all-link and per-link data counters, link error counters.
    assert drops == []


async def test_nvlink_and_energy_increases_over_the_reset_match_the_simulator() -> None:
    pages, truth, after = await scrape_over_reset(reset_after=4, ticks=9)
    mapper = GpuPageMapper("gb300-t16")
    rows = []
    for i, text in enumerate(pages):
        frame = mapper.map(text, round((T0 + (i + 1) * TICK_S) * 1000))
        rows.append({r["gpu"]: r for r in frame.table("gpu").to_pylist()})
    checked = 0
    for i in range(1, len(pages)):
        for g in TRAY_GPUS:
            old, new = rows[i - 1][g], rows[i][g]
            nvlink = step(old["nvlink_tx_kib"], new["nvlink_tx_kib"]) + step(
                old["nvlink_rx_kib"], new["nvlink_rx_kib"]
            )
            energy = step(old["energy_mj"], new["energy_mj"])
            true_kib = truth[i][g][0] - after[i - 1][g][0]
            true_mj = truth[i][g][1] - after[i - 1][g][1]
            assert true_kib > 1_000_000 and true_mj > 1_000_000  # the GPU was busy: a real check
            # Integer KiB and mJ readings of float accumulators: a few units of rounding each way, for
            # each link reading summed where the tray does not answer the all-link total.
            assert abs(nvlink - true_kib) <= 4 * LINK_READINGS, (i, g, nvlink, true_kib)
            assert abs(energy - true_mj) <= 2, (i, g, energy, true_mj)
            checked += 1
    assert checked == 8 * 4


def table_metrics() -> set[str]:
    """The metric names in the first table of docs/agent-metrics.md (first column, in backticks)."""
    text = DOCS.read_text()
    first_table = text.split("\n## ")[0]
    return set(re.findall(r"^\| `([A-Za-z_:][A-Za-z0-9_:]*)` \|", first_table, flags=re.MULTILINE))


def test_every_exported_family_is_in_the_names_table() -> None:
    xids = XidTally()
    frame = tray_frame(3, 0)
    xids.update(frame)
    text = frame_to_agent_page(frame, agent_gpus(3), hostname="tray03", xids=xids)
    exported = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))
    assert len(exported) > 20
    assert exported == table_metrics()


def _old_agent_page(text: str) -> str:
    """The page an agent from before the rename served (its names for the same columns)."""
    for spec in names.GPU_METRICS:
        old = (*spec.aliases, *spec.agent_aliases)
        if old:
            text = re.sub(rf"\b{spec.name}\b", old[0], text)
    return text


def test_the_mapper_reads_an_older_agents_names() -> None:
    text = frame_to_agent_page(tray_frame(3, 0), agent_gpus(3), hostname="tray03")
    old = _old_agent_page(text)
    assert "DCGM_FI_DEV_NVLINK_TX_BYTES_TOTAL" in old and "rackmon_gpu_nvlink_data" not in old
    current = GpuPageMapper("tray03").map(text, 1).table("gpu").to_pylist()
    legacy = GpuPageMapper("tray03").map(old, 1).table("gpu").to_pylist()
    assert legacy == current
    assert all(r["nvlink_tx_kib"] and r["mem_used_mib"] and r["power_limit_mw"] for r in legacy)


def test_dcgm_exporters_nvlink_byte_counters_are_not_read_as_payload() -> None:
    """On dcgm-exporter's page DCGM_FI_DEV_NVLINK_TX_BYTES_TOTAL is field 1201 (all bytes sent)."""
    old = _old_agent_page(frame_to_agent_page(tray_frame(3, 0), agent_gpus(3), hostname="tray03"))
    dcgm_like = "\n".join(line for line in old.splitlines() if "rackmon_" not in line) + "\n"
    rows = GpuPageMapper("dcgm", tray=3).map(dcgm_like, 1).table("gpu").to_pylist()
    assert len(rows) == 4
    assert all(r["nvlink_tx_kib"] is None and r["nvlink_rx_kib"] is None for r in rows)
    assert all(r["mem_used_mib"] and r["power_limit_mw"] for r in rows)  # plain aliases still read
