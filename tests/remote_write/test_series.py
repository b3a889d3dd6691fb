"""The store's rows as series: dcgm-exporter's names and labels plus rack/tray/gpu, the servers' own names,
histograms as _bucket/_count/_sum. Expected values are read from the store by this test's own SQL."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from collectors.remote_write.series import ORDER_BY, SeriesEncoder
from collectors.remote_write.settings import TABLES_SENT
from collectors.remote_write.wire import WriteRequest
from monitor.backfill import backfill
from storage.reader import StoreReader


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("series") / "store"
    backfill(root, 2, end_s=int(time.time()) - 2, seed=4)
    with StoreReader(root) as reader:
        tables = {t: reader.sql(f"SELECT * FROM {t} ORDER BY {ORDER_BY[t]}") for t in TABLES_SENT}
        gpu9 = reader.sql(
            "SELECT epoch_ms(ts) AS t, uuid, power_mw, energy_mj FROM gpu WHERE gpu = 9 ORDER BY ts"
        )
        ttft = reader.sql(
            "SELECT epoch_ms(ts) AS t, count, sum_s FROM serving_hist "
            "WHERE endpoint = 'vllm-09' AND metric = 'ttft' AND le = 'inf'::DOUBLE ORDER BY ts"
        )
    body, samples = SeriesEncoder("r7", hosts={3: "gb300-t03"}).encode(tables)
    request = WriteRequest.FromString(body)
    by_labels = {}
    for series in request.timeseries:
        labels = {label.name: label.value for label in series.labels}
        key = tuple(sorted(labels.items()))
        assert key not in by_labels  # one series per label set in a request
        by_labels[key] = [(s.timestamp, s.value) for s in series.samples]
    return by_labels, gpu9.to_pylist(), ttft.to_pylist(), samples


def find(by_labels, **want: str) -> list[tuple[int, float]]:
    hits = [v for k, v in by_labels.items() if dict(k) == want]
    assert len(hits) == 1, (
        want,
        [dict(k) for k in by_labels if dict(k).get("__name__") == want["__name__"]][:3],
    )
    return hits[0]


def test_gpu_series_carry_dcgm_names_and_labels(encoded) -> None:
    by_labels, gpu9, _, _ = encoded
    # Rack GPU 9 is T03.G2: tray 3, tray-local index 1; its host comes from the rack config.
    labels = {"rack": "r7", "tray": "3", "gpu": "1", "UUID": gpu9[0]["uuid"], "Hostname": "gb300-t03"}
    power = find(by_labels, __name__="DCGM_FI_DEV_POWER_USAGE", **labels)
    assert power == [(r["t"], r["power_mw"] / 1000) for r in gpu9]  # mW in the store, W on the wire
    energy = find(by_labels, __name__="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", **labels)
    assert energy == [(r["t"], float(r["energy_mj"])) for r in gpu9]  # mJ, as dcgm-exporter


def test_histograms_keep_buckets_count_and_sum_under_the_servers_names(encoded) -> None:
    by_labels, _, ttft, _ = encoded
    base = {"rack": "r7", "instance": "vllm-09", "model_name": "llama-2-70b"}
    count = find(by_labels, __name__="vllm:time_to_first_token_seconds_count", **base)
    assert count == [(r["t"], float(r["count"])) for r in ttft]
    total = find(by_labels, __name__="vllm:time_to_first_token_seconds_sum", **base)
    assert total == [(r["t"], r["sum_s"]) for r in ttft]
    top = find(by_labels, __name__="vllm:time_to_first_token_seconds_bucket", le="+Inf", **base)
    assert top == count


def test_every_series_has_a_name_and_the_rack(encoded) -> None:
    by_labels, _, _, samples = encoded
    assert all(dict(k).get("__name__") and dict(k).get("rack") == "r7" for k in by_labels)
    assert samples == sum(len(v) for v in by_labels.values())


def test_one_encoder_follows_ticks_that_endpoints_missed(tmp_path) -> None:
    """A collector's encoder keeps each part's request between calls; requests where a tray missed a tick
    (its rows absent), a GPU's reading is null, or all is back again must each carry exactly their rows."""
    root = tmp_path / "store"
    backfill(root, 6, end_s=int(time.time()) - 2, seed=8)
    with StoreReader(root) as reader:
        full = {t: reader.sql(f"SELECT * FROM {t} ORDER BY {ORDER_BY[t]}") for t in ("gpu", "nvlink")}
    first_ts = full["gpu"].column("ts")[0]
    # Tray 3 (rack GPUs 8..11) missed the first tick: no gpu or nvlink rows for it then.
    missed = {
        t: table.filter(
            pc.invert(
                pc.and_(
                    pc.equal(table.column("ts"), first_ts),
                    pc.is_in(table.column("gpu"), pa.array([8, 9, 10, 11], pa.int16())),
                )
            )
        )
        for t, table in full.items()
    }
    # GPU 20's power reading is null in every tick but the last.
    power = missed["gpu"].column("power_mw").to_pylist()
    gpus = missed["gpu"].column("gpu").to_pylist()
    last = max(missed["gpu"].column("ts").to_pylist())
    stamps = missed["gpu"].column("ts").to_pylist()
    power = [None if g == 20 and t != last else p for p, g, t in zip(power, gpus, stamps, strict=True)]
    nulled = dict(
        missed,
        gpu=missed["gpu"].set_column(
            missed["gpu"].schema.get_field_index("power_mw"), "power_mw", pa.array(power, pa.int32())
        ),
    )
    encoder = SeriesEncoder("r8")
    for tables in (full, missed, nulled, full, nulled):
        body, samples = encoder.encode(tables)
        got: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for series in WriteRequest.FromString(body).timeseries:
            labels = {label.name: label.value for label in series.labels}
            key = (labels["__name__"], labels["tray"], labels["gpu"], labels.get("link", ""))
            assert key not in got
            got[key] = [(s.timestamp, s.value) for s in series.samples]
        # Expected, from the rows themselves: power in W per GPU, tx bytes per link, non-null only.
        rows = tables["gpu"].to_pylist()
        for g in (8, 9, 20, 33):
            want = [
                (int(r["ts"].timestamp() * 1000), r["power_mw"] / 1000)
                for r in rows
                if r["gpu"] == g and r["power_mw"] is not None
            ]
            key = ("DCGM_FI_DEV_POWER_USAGE", str(g // 4 + 1), str(g % 4), "")
            assert got.get(key, []) == want, (g, key)
        links = tables["nvlink"].to_pylist()
        want = [
            (int(r["ts"].timestamp() * 1000), float(r["tx_kib"]) * 1024)
            for r in links
            if r["gpu"] == 9 and r["link"] == 7
        ]
        assert got[("rackmon_nvlink_data_tx_bytes_total", "3", "1", "7")] == want
        cells = sum(
            table.column(c).length() - table.column(c).null_count
            for t, table in tables.items()
            for c in table.column_names
            if c not in ("ts", "gpu", "uuid", "tray", "link")
        )
        assert samples == cells == sum(len(v) for v in got.values())


def _power_and_links(body: bytes) -> tuple[dict[tuple[str, str], list], dict[tuple[str, str, str], list]]:
    """(tray, gpu) -> power samples, (tray, gpu, link) -> tx samples of one request body."""
    power: dict[tuple[str, str], list] = {}
    tx: dict[tuple[str, str, str], list] = {}
    for series in WriteRequest.FromString(body).timeseries:
        labels = {label.name: label.value for label in series.labels}
        samples = [(s.timestamp, s.value) for s in series.samples]
        if labels["__name__"] == "DCGM_FI_DEV_POWER_USAGE":
            power[(labels["tray"], labels["gpu"])] = samples
        elif labels["__name__"] == "rackmon_nvlink_data_tx_bytes_total":
            tx[(labels["tray"], labels["gpu"], labels["link"])] = samples
    return power, tx


def _ms(ts) -> int:
    return int(ts.timestamp() * 1000)


def test_a_table_with_other_keys_or_other_null_cells_is_not_laid_out_as_the_last_one(tmp_path) -> None:
    """The encoder reuses a table's runs while its key columns are equal, and its null-cell counts while
    its nulls are where they were: the same row count with other keys (a GPU renumbered), or as many
    nulls in other cells (GPU 21's power null instead of GPU 20's), must each be encoded afresh."""
    root = tmp_path / "store"
    backfill(root, 4, end_s=int(time.time()) - 2, seed=9)
    with StoreReader(root) as reader:
        full = {t: reader.sql(f"SELECT * FROM {t} ORDER BY {ORDER_BY[t]}") for t in ("gpu", "nvlink")}

    def renumbered(table: pa.Table) -> pa.Table:
        """GPU 9's rows as those of GPU 77 in tray 20 (off the rack's 72): the same rows and count, other
        keys (sorted again)."""
        nine = pc.equal(table.column("gpu"), 9)
        gpu = pc.if_else(nine, pa.scalar(77, pa.int16()), table.column("gpu"))
        out = table.set_column(table.schema.get_field_index("gpu"), "gpu", gpu)
        if "tray" in out.column_names:
            tray = pc.if_else(nine, pa.scalar(20, out.schema.field("tray").type), out.column("tray"))
            out = out.set_column(out.schema.get_field_index("tray"), "tray", tray)
        keys = [("gpu", "ascending"), *([("link", "ascending")] if "link" in out.column_names else [])]
        return out.sort_by([*keys, ("ts", "ascending")])

    def power_null_for(g: int) -> dict[str, pa.Table]:
        table = full["gpu"]
        power = [
            None if gpu == g else p
            for p, gpu in zip(
                table.column("power_mw").to_pylist(), table.column("gpu").to_pylist(), strict=True
            )
        ]
        column = pa.array(power, pa.int32())
        return dict(full, gpu=table.set_column(table.schema.get_field_index("power_mw"), "power_mw", column))

    moved = {t: renumbered(table) for t, table in full.items()}
    encoder = SeriesEncoder("r9")
    for tables in (full, moved, full, power_null_for(20), power_null_for(21), full):
        power, tx = _power_and_links(encoder.encode(tables)[0])
        rows = tables["gpu"].to_pylist()
        for g, key in ((9, ("3", "1")), (20, ("6", "0")), (21, ("6", "1")), (77, ("20", "1"))):
            want = [
                (_ms(r["ts"]), r["power_mw"] / 1000)
                for r in rows
                if r["gpu"] == g and r["power_mw"] is not None
            ]
            assert power.get(key, []) == want, (g, key)
        links = tables["nvlink"].to_pylist()
        for g, key3 in ((9, ("3", "1", "5")), (77, ("20", "1", "5"))):
            want = [
                (_ms(r["ts"]), float(r["tx_kib"]) * 1024) for r in links if r["gpu"] == g and r["link"] == 5
            ]
            assert tx.get(key3, []) == want, (g, key3)
