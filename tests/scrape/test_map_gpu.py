"""Tray pages (agent, dcgm-exporter) -> gpu/nvlink/events rows, and frame -> agent page -> the same rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.mappings import GpuPageMapper, MappingError, XidTally, frame_to_agent_page
from collectors.promtext import parse
from collectors.rack import gpu_index
from storage.schemas import EVENTS, GPU, NVLINK, EventKind, GpuState
from tests.scrape.pagegen import agent_gpus, tray_frame

PAGES = Path(__file__).parent.parent / "data" / "pages"
TS = 1_790_000_000_000
UUID0 = "GPU-5c1b9a3e-8f0d-4b6a-9f43-2d7e1c0a9b01"
UUID1 = "GPU-7e2d4f10-3a5b-4c8e-b1d2-6f9a0e3c7d02"


def page(name: str) -> str:
    return (PAGES / name).read_text()


def test_dcgm_exporter_page_to_gpu_rows():
    frame = GpuPageMapper("tray16:9400", tray=16).map(page("dcgm.txt"), TS)
    assert set(frame.batches) == {"gpu"} and frame.batches["gpu"].schema == GPU
    first, second = frame.batches["gpu"].to_pylist()
    assert (first["gpu"], first["uuid"], first["tray"], first["state"]) == (60, UUID0, 16, GpuState.OK)
    assert (second["gpu"], second["uuid"]) == (61, UUID1)
    assert first["power_mw"] == 922_484 and second["power_mw"] == 187_207  # W as a float -> mW
    assert first["mem_total_mib"] == 203_053 + 80_208 + 947 == 284_208  # used + free + reserved
    assert (first["temp_mem_c"], second["temp_mem_c"]) == (58, None)  # DCGM blank sentinel -> null
    assert (first["energy_mj"], first["util_gpu_pct"], first["util_mem_pct"]) == (8_123_456_789_012, 100, 41)
    assert (first["sm_clock_mhz"], first["mem_clock_mhz"], first["clocks_event_reasons"]) == (1965, 3996, 4)
    assert first["nvlink_up"] is None and first["nvlink_tx_kib"] is None  # not on dcgm's default page


def test_dcgm_xid_gauge_change_is_one_xid_event_from_the_named_host():
    mapper = GpuPageMapper("tray16:9400", tray=16)
    assert "events" not in mapper.map(page("dcgm.txt"), TS).batches
    frame = mapper.map(page("dcgm_xid79.txt"), TS + 1000)
    assert frame.batches["events"].schema == EVENTS
    (event,) = frame.batches["events"].to_pylist()
    assert (event["kind"], event["gpu"], event["code"], event["source"]) == (
        EventKind.XID,
        61,
        79,
        "gb300-tray16",
    )
    assert event["detail"] == "GPU has fallen off the bus"  # the gpu column says where
    assert "events" not in mapper.map(page("dcgm_xid79.txt"), TS + 2000).batches  # no change, no event


def test_lower_case_hostname_and_placement_by_uuid():
    mapper = GpuPageMapper("dcgm:9400", placement={UUID0: gpu_index(3, 4)})
    frame = mapper.map(page("dcgm_hostname.txt"), TS)
    (row,) = frame.batches["gpu"].to_pylist()
    assert (row["gpu"], row["tray"], row["mem_total_mib"]) == (gpu_index(3, 4), 3, 203_053 + 80_208)
    assert GpuPageMapper._host(parse(page("dcgm_hostname.txt"))) == "dcgm-exporter-wwwjh"


def test_a_gpu_that_cannot_be_placed_is_one_clear_error():
    with pytest.raises(MappingError, match="cannot place GPU GPU-5c1b9a3e"):
        GpuPageMapper("dcgm:9400").map(page("dcgm.txt"), TS)


def test_agent_page_maps_back_to_the_frame_it_was_rendered_from():
    frame = tray_frame(7, tick=4, lost_module=3)
    text = frame_to_agent_page(frame, agent_gpus(7), hostname="tray07")
    back = GpuPageMapper("tray07:9401").map(text, frame.ts_ms)
    assert back.batches["gpu"].equals(frame.batches["gpu"])
    assert back.batches["nvlink"].schema == NVLINK and back.batches["nvlink"].equals(frame.batches["nvlink"])
    lost = back.batches["gpu"].to_pylist()[2]
    assert lost["state"] == GpuState.LOST and lost["power_mw"] is None


def test_agent_page_uses_dcgm_names_units_and_labels():
    frame = tray_frame(16, tick=1)
    fams = parse(frame_to_agent_page(frame, agent_gpus(16), hostname="gb300-t16"))
    power = fams["DCGM_FI_DEV_POWER_USAGE"].samples[0]
    assert power.value == frame.batches["gpu"].column("power_mw")[0].as_py() / 1000
    assert power.labels["Hostname"] == "gb300-t16" and power.labels["device"] == "nvidia0"
    info = fams["rackmon_gpu_info"].samples[1].labels
    assert (info["tray"], info["module"], info["slot"]) == ("16", "2", "25")
    tx = fams["rackmon_nvlink_data_tx_bytes_total"]
    assert (
        tx.type == "counter"
        and tx.samples[0].value == frame.batches["nvlink"].column("tx_kib")[0].as_py() * 1024
    )
    assert len(tx.samples) == 72


def test_events_travel_as_counters_and_state_changes():
    gpus, mapper, tally = agent_gpus(5), GpuPageMapper("tray05:9401"), XidTally()
    events = []
    for tick, xid in ((0, None), (1, 79), (2, None), (3, 79), (4, 48)):
        frame = tray_frame(5, tick, xid=xid, lost_module=2 if tick == 4 else None)
        tally.update(frame)
        out = mapper.map(frame_to_agent_page(frame, gpus, hostname="tray05", xids=tally), frame.ts_ms)
        if "events" in out.batches:
            events += [
                (tick, e["kind"], e["gpu"], e["link"], e["code"]) for e in out.batches["events"].to_pylist()
            ]
    g2 = gpu_index(5, 2)
    xids = [e for e in events if e[1] == EventKind.XID]
    assert xids == [(1, "xid", g2, None, 79), (3, "xid", g2, None, 79), (4, "xid", g2, None, 48)]
    assert (4, EventKind.GPU_LOST, g2, None, 15) in events  # NVML_ERROR_GPU_IS_LOST
    # Link 5 of every GPU is down on ticks divisible by 3 (see tray_frame): down at 3, up again at 4.
    assert (3, EventKind.LINK_DOWN, gpu_index(5, 1), 5, 0) in events
    assert (4, EventKind.LINK_UP, gpu_index(5, 1), 5, 1) in events
    clocks = [e for e in events if e[1] == EventKind.CLOCKS_EVENT and e[2] == gpu_index(5, 1)]
    assert [e[0] for e in clocks] == [1, 2, 3, 4]  # the SwPowerCap bit flips every tick
