"""[remote_write] in the rack config and `monitor collect --remote-write`: one line per mistake, and
recording goes on whatever the receiver answers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from collectors.config import ConfigError, parse_config, render_config
from collectors.remote_write.settings import RemoteWriteSettings, TlsSettings
from storage.reader import StoreReader
from tests.cli.test_store_commands import monitor
from tests.remote_write.test_faults import Receiver

RACK = """
[rack]
name = "r1"
[[tray]]
tray = 1
url = "http://127.0.0.1:9401/metrics"
"""

FULL = (
    RACK
    + """
[remote_write]
url = "https://vminsert:8480/insert/0/prometheus/api/v1/write"
batch_size = 20000
interval = 2
timeout = 10
max_backlog = 7200
tables = ["serving", "gpu"]
[remote_write.headers]
X-Scope-OrgID = "rack-1"
[remote_write.basic_auth]
username = "rack-1"
password_file = "/etc/rack-monitor/rw-password"
[remote_write.tls_config]
ca_file = "/etc/rack-monitor/ca.pem"
insecure_skip_verify = false
"""
)


def test_full_table_parses_and_renders_back() -> None:
    config = parse_config(FULL, "rack.toml")
    assert config.remote_write == RemoteWriteSettings(
        url="https://vminsert:8480/insert/0/prometheus/api/v1/write",
        headers={"X-Scope-OrgID": "rack-1"},
        username="rack-1",
        password_file="/etc/rack-monitor/rw-password",
        tls=TlsSettings(ca_file="/etc/rack-monitor/ca.pem"),
        batch_size=20000,
        interval_s=2.0,
        timeout_s=10.0,
        max_backlog_s=7200.0,
        tables=("gpu", "serving"),
    )
    assert parse_config(render_config(config), "rack.toml") == parse_config(FULL, "rack.toml")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'url = "http://x/api/v1/write"\nbatchsize = 3',
            r"rack.toml:\d+: remote_write.batchsize: unknown field",
        ),
        ("batch_size = 10", r"remote_write.url: is missing"),
        ('url = "ftp://x/w"', r"remote_write.url: 'ftp://x/w' is not an http:// or https:// URL"),
        ('url = "http://x/w"\ninterval = 0', r"remote_write.interval: must be a number in 0.05..3600"),
        (
            'url = "http://x/w"\nbearer_token_file = "/t"\n[remote_write.basic_auth]\nusername = "u"',
            "give basic_auth or a bearer token, not both",
        ),
        ('url = "http://x/w"\n[remote_write.headers]\nContent-Type = "x"', "cannot be set here"),
        (
            'url = "http://x/w"\n[remote_write.tls_config]\ncert_file = "/c"',
            "cert_file and key_file go together",
        ),
    ],
)
def test_mistakes_are_one_line_at_their_line(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(RACK + "[remote_write]\n" + table + "\n", "rack.toml")
    assert "\n" not in str(err.value)


def test_a_token_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "rack.toml"
    config.write_text(
        RACK + f'[remote_write]\nurl = "http://127.0.0.1:1/w"\nbearer_token_file = "{tmp_path}/nope"\n'
    )
    done = monitor("collect", "--config", str(config), "--store", str(tmp_path / "s"), "--duration", "1s")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"monitor: remote_write.bearer_token_file: cannot read {tmp_path}/nope: No such file or directory"
    ]


def test_a_bad_url_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    done = monitor("collect", "--sim", "--store", str(tmp_path / "s"), "--remote-write", "not a url")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "monitor: --remote-write: 'not a url' is not an http:// or https:// URL"
    ]


def test_collect_records_on_while_the_receiver_says_401(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Receiver() as receiver:
        receiver.mode = "401"
        began = time.time()
        done = monitor(
            "collect", "--sim", "--store", str(store), "--duration", "10s", "--flush", "1s",
            "--remote-write", receiver.url("api/v1/write"),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "remote-write: 401 unauthorized" in done.stderr
    assert "Traceback" not in done.stderr
    with StoreReader(store) as reader:
        ticks = reader.sql(
            "SELECT count(DISTINCT ts) AS n FROM gpu WHERE epoch_ms(ts) >= ?", [int(began * 1000)]
        )
    assert ticks.column("n")[0].as_py() >= 2  # frames kept landing in the store


def test_collect_sends_what_it_records_while_it_records(tmp_path: Path) -> None:
    """The real recorder (sim trays, live head, sealing writer) with remote-write on: every tick the receiver
    got holds exactly the store's samples of that tick, and the ticks sent are the store's oldest."""
    store = tmp_path / "store"
    with Receiver() as receiver:
        done = monitor(
            "collect", "--sim", "--store", str(store), "--duration", "14s", "--flush", "6s",
            "--remote-write", receiver.url("api/v1/write"),
        )  # fmt: skip
        requests = list(receiver.requests)
    assert done.returncode == 0, done.stderr
    got: dict[int, int] = {}
    for _headers, series in requests:
        for ts in series:
            for sample in ts.samples:
                got[sample.timestamp] = got.get(sample.timestamp, 0) + 1
    assert got, done.stderr
    with StoreReader(store) as reader:
        stored = per_tick_samples(reader)
    assert sorted(got) == sorted(stored)[: len(got)]  # oldest first, no gap
    assert got == {t: stored[t] for t in got}


def per_tick_samples(reader: StoreReader) -> dict[int, int]:
    """Non-null metric cells per tick (gpu, nvlink, serving, host tables; no serving rows under --sim)."""
    keys = {"gpu": {"ts", "gpu", "uuid", "tray"}, "nvlink": {"ts", "gpu", "link"}, "host": {"ts", "host"}}
    out: dict[int, int] = {}
    for table, skip in keys.items():
        columns = [f.name for f in reader.sql(f"SELECT * FROM {table} LIMIT 0").schema if f.name not in skip]
        cells = " + ".join(f"count({c})" for c in columns)
        for row in reader.sql(f"SELECT epoch_ms(ts) AS t, {cells} AS n FROM {table} GROUP BY ts").to_pylist():
            out[row["t"]] = out.get(row["t"], 0) + row["n"]
    return out
