"""Every recorded sample arrives, once, in real Prometheus 2.42 and VictoriaMetrics 1.79 receivers.

The expected counts and values come from the local store, read by this test's own SQL (not through
the sender's encoder), with the dcgm-exporter names and scales written out here by hand.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from collectors.remote_write.sender import RemoteWriteSender
from collectors.remote_write.series import SeriesEncoder
from collectors.remote_write.settings import RemoteWriteSettings
from monitor.backfill import backfill
from storage.reader import StoreReader
from tests.peer_servers import prometheus_receiver, victoria_receiver, write_url
from tests.remote_write.receivers import count_by_name, query, settle

RACK = "rw-test"
SELECTOR = f'{{rack="{RACK}"}}'
KEYS = {
    "gpu": {"ts", "gpu", "uuid", "tray"},
    "nvlink": {"ts", "gpu", "link"},
    "serving": {"ts", "endpoint", "engine", "model", "gpus"},
    "host": {"ts", "host"},
}


def store_samples(root: Path) -> int:
    """Non-null metric cells in the store, plus a histogram's _count and _sum on each +Inf row."""
    total = 0
    with StoreReader(root) as reader:
        for table, keys in KEYS.items():
            columns = [
                f.name for f in reader.sql(f"SELECT * FROM {table} LIMIT 0").schema if f.name not in keys
            ]
            counts = reader.sql(f"SELECT {', '.join(f'count({c})' for c in columns)} FROM {table}")
            total += sum(counts.to_pylist()[0].values())
        hist = reader.sql(
            "SELECT count(*) + count(*) FILTER (le = 'inf'::DOUBLE) + count(sum_s) AS n FROM serving_hist"
        )
        total += hist.column("n")[0].as_py()
    return total


def family_counts(root: Path) -> dict[str, int]:
    """Samples of a few families, counted in the store (names and columns written out by hand)."""
    with StoreReader(root) as reader:

        def count(sql: str) -> int:
            return int(reader.sql(sql).column(0)[0].as_py())

        return {
            "DCGM_FI_DEV_POWER_USAGE": count("SELECT count(power_mw) FROM gpu"),
            "DCGM_FI_DEV_GPU_TEMP": count("SELECT count(temp_gpu_c) FROM gpu"),
            "rackmon_nvlink_data_tx_bytes_total": count("SELECT count(tx_kib) FROM nvlink"),
            "vllm:generation_tokens_total": count(
                "SELECT count(generation_tokens) FROM serving WHERE engine = 'vllm'"
            ),
            "vllm:time_to_first_token_seconds_bucket": count(
                "SELECT count(*) FROM serving_hist h JOIN (SELECT DISTINCT endpoint FROM serving "
                "WHERE engine = 'vllm') s USING (endpoint) WHERE metric = 'ttft'"
            ),
        }


def power_of_gpu(root: Path, rack_index: int) -> list[tuple[int, float]]:
    """(ts ms, watts) of one GPU from the store: power_mw / 1000 (DCGM_FI_DEV_POWER_USAGE is in W)."""
    with StoreReader(root) as reader:
        rows = reader.sql(
            f"SELECT epoch_ms(ts) AS t, power_mw FROM gpu WHERE gpu = {rack_index} ORDER BY ts"
        ).to_pylist()
    return [(r["t"], r["power_mw"] / 1000) for r in rows if r["power_mw"] is not None]


def link_bytes(root: Path, rack_index: int, link: int) -> list[tuple[int, float]]:
    """(ts ms, bytes) of one link's tx counter: tx_kib x 1024."""
    with StoreReader(root) as reader:
        rows = reader.sql(
            "SELECT epoch_ms(ts) AS t, tx_kib FROM nvlink "
            f"WHERE gpu = {rack_index} AND link = {link} ORDER BY ts"
        ).to_pylist()
    return [(r["t"], float(r["tx_kib"]) * 1024) for r in rows]


def raw_samples(server, promql: str, at_s: float, window_s: int) -> list[tuple[int, float]]:
    rows = query(server, f"{promql}[{window_s}s]", at_s)
    assert len(rows) == 1, rows
    return [(round(float(t) * 1000), float(v)) for t, v in rows[0]["values"]]


def drain(sender: RemoteWriteSender) -> None:
    while sender.send_once():
        pass


@pytest.mark.parametrize("receiver", [prometheus_receiver, victoria_receiver], ids=["prometheus", "victoria"])
def test_a_run_arrives_complete(tmp_path: Path, receiver) -> None:
    store = tmp_path / "store"
    end_s = int(time.time()) - 2
    backfill(store, 12, end_s=end_s, seed=3)
    expected_total = store_samples(store)
    with receiver(tmp_path) as server:
        settings = RemoteWriteSettings(url=write_url(server), batch_size=30_000)
        sender = RemoteWriteSender(store, settings, SeriesEncoder(RACK))
        drain(sender)
        assert sender.status.state == "ok", sender.status
        assert sender.status.sent_samples == expected_total
        at_s, window = end_s + 1, 120
        assert settle(server, SELECTOR, at_s, window, expected_total) == expected_total
        got = count_by_name(server, SELECTOR, at_s, window)
        for name, n in family_counts(store).items():
            assert got.get(name) == n, name
        # GPU T03.G2 is rack index 9: tray 3, tray-local gpu 1.
        power = raw_samples(
            server, f'DCGM_FI_DEV_POWER_USAGE{{rack="{RACK}",tray="3",gpu="1"}}', at_s, window
        )
        assert power == power_of_gpu(store, 9)
        tx = raw_samples(
            server,
            f'rackmon_nvlink_data_tx_bytes_total{{rack="{RACK}",tray="3",gpu="1",link="7"}}',
            at_s,
            window,
        )
        assert tx == link_bytes(store, 9, 7)
