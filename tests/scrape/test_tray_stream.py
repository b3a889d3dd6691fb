"""The tray Arrow stream against the text page of the same frame, and the streams the mapper refuses.

The expected rows come from the text path (frame_to_agent_page, parsed and mapped by its own
GpuPageMapper), an independent reading of the same frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from collectors.mappings import GpuPageMapper, MappingError, XidTally, frame_to_agent_page
from collectors.mappings.tray_arrow import SCHEMA, _list_values, decode_tray_stream
from collectors.mappings.tray_stream import VERSION_KEY, frame_to_tray_stream
from storage.frame import Frame, batch_from_rows
from storage.schemas import SORT_KEYS, TABLES
from tests.scrape.pagegen import agent_gpus, tray_frame

TRAY = 3


def _both(frames: list[Frame], xids: list[XidTally]) -> tuple[list[Frame], list[Frame]]:
    """Each frame mapped through its text page and through its Arrow stream (one mapper per path)."""
    text_mapper, arrow_mapper = GpuPageMapper("t"), GpuPageMapper("t")
    from_text, from_arrow = [], []
    for tick, (frame, tally) in enumerate(zip(frames, xids, strict=True)):
        page = frame_to_agent_page(frame, agent_gpus(TRAY), hostname="tray03", xids=tally)
        stream = frame_to_tray_stream(frame, agent_gpus(TRAY), hostname="tray03", xids=tally)
        from_text.append(text_mapper.map(page, tick))
        from_arrow.append(arrow_mapper.map_stream(decode_tray_stream(stream), tick))
    return from_text, from_arrow


def _edit(frame: Frame, table: str, change: Callable[[dict[str, Any]], None]) -> Frame:
    rows = frame.table(table).to_pylist()
    for row in rows:
        change(row)
    return Frame(frame.ts_ms, {**frame.batches, table: batch_from_rows(table, rows)})


def test_edge_values_map_alike() -> None:
    """DCGM blanks, a lost GPU, a link without values, xids, all-link totals of 0 filled from links."""

    def blanks(row: dict[str, Any]) -> None:
        if row["gpu"] % 4 == 1:
            row["energy_mj"] = 9_223_372_036_854_775_794  # DCGM's int64 blank
            row["nvlink_tx_kib"] = 0  # filled from the links' sum on both paths

    def link_blanks(row: dict[str, Any]) -> None:
        if row["link"] == 5:
            row["symbol_errors"] = 9_223_372_036_854_775_000
        if row["link"] == 7 and row["gpu"] % 4 == 2:  # every reading of the link blank
            for key in TABLES["nvlink"].names:
                if key not in SORT_KEYS["nvlink"] and key != "ts":
                    row[key] = None

    frames, tallies = [], []
    tally = XidTally()
    for tick in range(5):
        # the same XID twice in a row: the counter says so, the last-XID gauge alone would not
        frame = tray_frame(TRAY, tick, lost_module=2 if tick >= 2 else None, xid=79 if tick >= 3 else None)
        frame = _edit(_edit(frame, "gpu", blanks), "nvlink", link_blanks)
        tally.update(frame)
        frames.append(frame)
        tallies.append(XidTally(dict(tally.counts), dict(tally.last)))
    from_text, from_arrow = _both(frames, tallies)
    kinds = set()
    for text, arrow in zip(from_text, from_arrow, strict=True):
        assert sorted(text.batches) == sorted(arrow.batches)
        for table in text.batches:
            assert text.table(table).to_pylist() == arrow.table(table).to_pylist(), table
        kinds.update(text.table("events").column("kind").to_pylist())
    assert {"gpu_lost", "xid"} <= kinds
    assert from_text[4].table("events").column("kind").to_pylist().count("xid") == 1
    assert from_arrow[0].table("nvlink").num_rows == 4 * 18 - 1  # the valueless link is no row
    assert None in from_arrow[0].table("gpu").column("energy_mj").to_pylist()


def _good() -> dict[str, list[dict[str, Any]]]:
    body = frame_to_tray_stream(tray_frame(TRAY, 1), agent_gpus(TRAY), hostname="tray03")
    return pa.ipc.open_stream(body).read_next_batch().to_pylist()[0]


def _stream(lists: dict[str, list[dict[str, Any]]]) -> bytes:
    schema = SCHEMA.with_metadata({VERSION_KEY: b"1"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.RecordBatch.from_pylist([lists], schema=schema))
    return sink.getvalue().to_pybytes()


def _twice(lists: dict[str, list[dict[str, Any]]]) -> None:
    lists["gpu"][1]["uuid"] = lists["gpu"][0]["uuid"]
    lists["gpu"][1]["module"] = lists["gpu"][0]["module"]


def _set(table: str, key: str, value: object, row: int = 0) -> Callable[[dict[str, Any]], None]:
    def change(lists: dict[str, list[dict[str, Any]]]) -> None:
        lists[table][row][key] = value

    return change


def _add_xid(lists: dict[str, list[dict[str, Any]]]) -> None:
    lists["xid"].append({"gpu": 0, "xid": 79, "count": 1})


def _add_link(lists: dict[str, list[dict[str, Any]]]) -> None:
    lists["nvlink"].append(dict(lists["nvlink"][0]))


def _many_links(lists: dict[str, list[dict[str, Any]]]) -> None:
    lists["nvlink"] = lists["nvlink"] * 20


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_set("gpu", "module", 9), "rackmon_gpu_info"),
        (_set("gpu", "tray", 0), "rackmon_gpu_info"),
        (_set("gpu", "uuid", None), "without uuid"),
        (_twice, "twice"),
        (_set("nvlink", "link", 18), "outside 0..17"),
        (_set("nvlink", "gpu", 0), "GPU not in the Arrow stream"),
        (_add_link, "NVLink twice"),
        (_many_links, "more than 1296 nvlink rows"),
        (_add_xid, "XID count of a GPU not in the Arrow stream"),
    ],
)
def test_streams_the_mapper_refuses(change: Callable[[dict[str, Any]], None], reason: str) -> None:
    lists = _good()
    change(lists)
    with pytest.raises(MappingError, match=reason):
        GpuPageMapper("t").map_stream(decode_tray_stream(_stream(lists)), 1)


def test_the_good_stream_maps() -> None:
    """The fixture of the refusals is itself a stream the mapper takes (so each refusal is its change's)."""
    frame = GpuPageMapper("t").map_stream(decode_tray_stream(_stream(_good())), 1)
    assert frame.table("gpu").num_rows == 4 and frame.table("nvlink").num_rows == 72


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "malformed Arrow stream"),
        (b"text/plain, really", "malformed Arrow stream"),
    ],
)
def test_not_a_stream(body: bytes, reason: str) -> None:
    with pytest.raises(MappingError, match=reason):
        decode_tray_stream(body)


def test_a_null_list_is_refused() -> None:
    schema = SCHEMA.with_metadata({VERSION_KEY: b"1"})
    batch = pa.RecordBatch.from_pylist([{"gpu": None, "nvlink": [], "xid": []}], schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch)
    with pytest.raises(MappingError, match="the gpu list is null"):
        decode_tray_stream(sink.getvalue().to_pybytes())


def test_list_values_are_what_flatten_gives_whatever_the_offsets() -> None:
    """The stream's lists are read without flatten's compute call where the row spans the values; a row
    that starts past 0 or ends short (a hand-made stream: pyarrow's writer rebases offsets) still reads
    as flatten() reads it."""
    values = pa.array([9, 9, 3, 4, 5, 9], pa.int32())
    lists = [
        pa.ListArray.from_arrays(pa.array([0, 6], pa.int32()), values),
        pa.ListArray.from_arrays(pa.array([2, 5], pa.int32()), values),
        pa.ListArray.from_arrays(pa.array([0, 2, 5], pa.int32()), values).slice(1),
        pa.ListArray.from_arrays(pa.array([0, 0], pa.int32()), values.slice(0, 0)),
    ]
    for column in lists:
        assert _list_values(column).equals(column.flatten()), column


def _reference_stream(frame: Frame, hostname: str, tally: XidTally) -> pa.Table:
    """What the tray stream must hold for `frame`, built independently of the agent's writer: with
    pyarrow (rows picked by `take`, structs from pyarrow arrays), from the format's description in
    tray_arrow's docstring (GPUs in rack order, links in (GPU, link) order, XID counts sorted)."""
    gpus = {g.rack_index: g for g in agent_gpus(TRAY)}
    gpu = frame.table("gpu").sort_by("gpu")
    gpu = gpu.filter(pa.array([g in gpus for g in gpu.column("gpu").to_pylist()]))
    racks = gpu.column("gpu").to_pylist()
    gpu_fields = SCHEMA.field("gpu").type.value_type
    own = {
        "uuid": [gpus[r].uuid for r in racks],
        "tray": [gpus[r].tray for r in racks],
        "module": [gpus[r].module for r in racks],
        "xid_last": [tally.last.get(r, 0) for r in racks],
    }
    gpu_rows = [
        {f.name: own[f.name][i] if f.name in own else gpu.column(f.name)[i].as_py() for f in gpu_fields}
        for i in range(len(racks))
    ]
    links = frame.table("nvlink").sort_by([("gpu", "ascending"), ("link", "ascending")])
    links = links.filter(pa.array([g in racks for g in links.column("gpu").to_pylist()]))
    link_names = [f.name for f in SCHEMA.field("nvlink").type.value_type]
    xids = [{"gpu": g, "xid": x, "count": n} for (g, x), n in sorted(tally.counts.items()) if g in racks]
    row = {"gpu": gpu_rows, "nvlink": links.select(link_names).to_pylist(), "xid": xids}
    schema = SCHEMA.with_metadata({VERSION_KEY: b"1", b"rackmon.hostname": hostname.encode()})
    return pa.Table.from_pylist([row], schema=schema)


def test_the_agent_s_stream_holds_what_a_pyarrow_writer_would() -> None:
    """The agent's writer (nanoarrow) against the reference, field by field and with its metadata: on
    frames in NVML's order (GPUs 1, 0, 3, 2 within the tray, each GPU's links together), with a lost
    GPU, null readings, XIDs, and a GPU of the tray missing from the frame."""
    tally = XidTally()
    nvml_order = [1, 0, 3, 2]
    for tick in range(6):
        frame = tray_frame(
            TRAY, tick, lost_module=3 if tick >= 2 else None, xid=48 if tick in (1, 4) else None
        )
        gpu = frame.table("gpu")
        links = frame.table("nvlink")
        by_gpu = sorted(
            range(links.num_rows), key=lambda i: nvml_order.index(links.column("gpu")[i].as_py() % 4)
        )
        batches = {**frame.batches, "gpu": gpu.take(nvml_order), "nvlink": links.take(by_gpu)}
        if tick == 5:  # one GPU of the tray has no row: it, its links and its XIDs are left out
            keep = [i for i in range(4) if batches["gpu"].column("gpu")[i].as_py() % 4 != 0]
            batches["gpu"] = batches["gpu"].take(keep)
        frame = Frame(frame.ts_ms, batches)
        tally.update(frame)
        stream = frame_to_tray_stream(frame, agent_gpus(TRAY), hostname="tray03", xids=tally)
        got = pa.ipc.open_stream(pa.py_buffer(stream)).read_all()
        want = _reference_stream(frame, "tray03", tally)
        assert got.schema.equals(want.schema, check_metadata=True), tick
        assert got.to_pylist() == want.to_pylist(), tick
