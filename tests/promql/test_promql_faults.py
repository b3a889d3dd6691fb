"""The PromQL source on a failing query API: one clear state each, no crash; its config; `monitor import`.

The API here is a real aiohttp server on loopback answering /api/v1/query with a matrix written in this file
(one dcgm-exporter tray: 4 GPUs of host node-a-07, power and temperature), or failing on demand: HTTP 401
(without the right bearer token), HTTP 500, a hang, an answer that is not a matrix. A refused port is the
bad URL.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from collectors.config import ConfigError, parse_config, render_config
from collectors.poller import Poller
from collectors.promql_source import PromQLSource
from storage.head import Head
from storage.reader import StoreReader
from storage.schemas import EndpointState, EventKind, GpuState
from tests.loopback import LoopbackServer
from tests.net.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret"
UUIDS = [f"GPU-0000000{i}-aaaa-bbbb-cccc-00000000000{i}" for i in range(4)]
POWER_W = [512.5, 600.25, 700.0, 1399.999]
"""Written on the fake API's answer; tray 7's GPUs are rack indices 24..27, power in mW in the store."""


class FakeApi(LoopbackServer):
    """/api/v1/query as Prometheus answers it, or failing as `mode` says."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"
        self.queries: list[dict[str, str]] = []
        self.released = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        self.released = asyncio.Event()
        app.router.add_get("/api/v1/query", self._query)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.released.set)
        super().stop()

    async def _query(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"status": "error", "errorType": "unauthorized"}, status=401)
        if self.mode == "500":
            return web.Response(status=500, text="internal error")
        if self.mode == "hang":
            await self.released.wait()
        if self.mode == "vector":
            return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})
        end = float(request.query["time"])
        window_ms = int(request.query["query"].rsplit("[", 1)[1].removesuffix("ms]"))
        result = _tray(end, window_ms / 1000)
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": result}})


def _tray(end: float, window_s: float) -> list[dict[str, Any]]:
    """dcgm-exporter's series of one tray, scraped every whole second in (end - window, end], with the same
    values throughout but for one older sample (value 1) just before the window's first scrape."""
    stamps = [float(t) for t in range(int(end - window_s) + 1, int(end) + 1)]
    result = []
    for gpu, (uuid, watts) in enumerate(zip(UUIDS, POWER_W, strict=True)):
        labels = {"gpu": str(gpu), "UUID": uuid, "Hostname": "node-a-07", "job": "dcgm", "rack": "a"}
        for name, value in (("DCGM_FI_DEV_POWER_USAGE", watts), ("DCGM_FI_DEV_GPU_TEMP", 40 + gpu)):
            values = [[stamps[0] - 0.5, "1"], *([t, str(value)] for t in stamps)]
            result.append({"metric": {"__name__": name, **labels}, "values": values})
    return result


def _config(tmp_path: Path, url: str, token: bool = True) -> Any:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    text = f"""
[rack]
name = "a"
down_after = 2

[promql]
url = "{url}"
match = {{ rack = "a" }}
tray_pattern = "-(\\\\d+)$"
{f'bearer_token_file = "{token_file}"' if token else ""}
"""
    path = tmp_path / "rack.toml"
    path.write_text(text)
    return parse_config(text, path)


@pytest.fixture
def api():
    with FakeApi() as server:
        yield server


def _events(frame: Any, kind: str) -> list[dict[str, Any]]:
    if "events" not in frame.batches:
        return []
    return [e for e in frame.table("events").to_pylist() if e["kind"] == kind]


def test_one_query_a_tick_maps_dcgm_exporter_series_to_the_rack(api: FakeApi, tmp_path: Path) -> None:
    source = PromQLSource(_config(tmp_path, api.url("")), timeout_s=30)
    frame = source.poll(1_800_000_000_000)
    gpu = frame.table("gpu").to_pylist()
    assert [r["gpu"] for r in gpu] == [24, 25, 26, 27]  # tray 7 from the host name's pattern
    assert [r["power_mw"] for r in gpu] == [round(w * 1000) for w in POWER_W]
    assert [r["temp_gpu_c"] for r in gpu] == [40, 41, 42, 43]
    assert len(api.queries) == 1
    query = api.queries[0]
    assert query["time"] == "1800000000.000"
    assert query["query"].endswith('rack="a"}[3000ms]')
    assert "DCGM_FI_DEV_POWER_USAGE|" in query["query"]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("401", "HTTP 401"),
        ("500", "HTTP 500"),
        ("hang", "no answer within 1 s"),
        ("vector", "expected a matrix of raw samples, got 'vector'"),
        ("refused", "connection refused"),
    ],
)
def test_a_failing_backend_is_one_clear_state(api: FakeApi, tmp_path: Path, mode: str, reason: str) -> None:
    good = api.url("")
    source = PromQLSource(_config(tmp_path, good), timeout_s=1.0)
    poller = Poller([source], Head(), interval=1.0, deadline=30.0)
    try:
        first = poller.tick(1_800_000_000_000)
        assert {r["state"] for r in first.table("gpu").to_pylist()} == {GpuState.OK}
        if mode == "401":
            source.api = PromQLSource(_config(tmp_path, good, token=False), timeout_s=1.0).api
        elif mode == "refused":
            source.api = PromQLSource(_config(tmp_path, f"http://127.0.0.1:{free_port()}"), timeout_s=1.0).api
        else:
            api.mode = mode
        failed = [poller.tick(1_800_000_001_000), poller.tick(1_800_000_002_000)]
        api.mode = "ok"
        source.api = PromQLSource(_config(tmp_path, good), timeout_s=1.0).api
        back = poller.tick(1_800_000_003_000)
    finally:
        poller.stop()
    for frame in failed:  # the tray's GPUs stand in STALE, without metrics
        rows = frame.table("gpu").to_pylist()
        assert [r["gpu"] for r in rows] == [24, 25, 26, 27]
        assert {r["state"] for r in rows} == {GpuState.STALE} and {r["power_mw"] for r in rows} == {None}
    down = _events(failed[0], EventKind.ENDPOINT_DOWN)
    assert len(down) == 1 and reason in down[0]["detail"] and down[0]["source"] == "a"
    assert _events(failed[1], EventKind.ENDPOINT_DOWN) == []  # one event for the outage, not one a tick
    assert _events(back, EventKind.ENDPOINT_UP)
    assert {r["state"] for r in back.table("gpu").to_pylist()} == {GpuState.OK}
    assert source.state == EndpointState.OK


def test_the_backend_state_and_reason_while_it_fails(api: FakeApi, tmp_path: Path) -> None:
    api.mode = "500"
    source = PromQLSource(_config(tmp_path, api.url("")), timeout_s=5)
    frame = source.poll(1_800_000_000_000)
    assert source.state == EndpointState.DOWN and source.reason.endswith("HTTP 500")
    assert "gpu" not in frame.batches  # nothing was ever seen: no GPU to stand in for


# -- the config ----------------------------------------------------------------------------------------


def test_the_promql_table_round_trips(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://vm:8428/")
    promql = config.promql
    assert promql is not None and promql.url == "http://vm:8428" and promql.match == (("rack", "a"),)
    assert promql.tray_pattern == "-(\\d+)$" and promql.lookback_s == 3.0
    again = parse_config(render_config(config), config.path)
    assert again.promql == promql


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('[promql]\nmatch = { rack = "a" }', "promql.url: is missing"),
        ('[promql]\nurl = "ftp://x"', "promql.url: 'ftp://x' is not an http"),
        ('[promql]\nurl = "http://x"\nlookback = 0', "promql.lookback: must be seconds in (0, 3600]"),
        ('[promql]\nurl = "http://x"\ntray_pattern = "node"', "promql.tray_pattern: needs a group"),
        ('[promql]\nurl = "http://x"\ntray_pattern = "("', "promql.tray_pattern: is not a regex"),
        ('[promql]\nurl = "http://x"\nmatchers = 1', "promql.matchers: unknown field"),
        ('[promql]\nurl = "http://x"\n[promql.trays]\nn1 = 19', "promql.trays.n1: must be a compute tray"),
    ],
)
def test_a_bad_promql_table_is_one_line(body: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"rack\.toml:\d+: ") as err:
        parse_config(body, "rack.toml")
    assert problem in str(err.value)


# -- monitor import ------------------------------------------------------------------------------------

ENTRY = "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()"


def _monitor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", ENTRY, *args], cwd=ROOT, capture_output=True, text=True)


def test_import_writes_the_window_into_a_store(api: FakeApi, tmp_path: Path) -> None:
    config = _config(tmp_path, api.url(""))
    out = _monitor(
        "import", "--config", str(config.path), "--store", str(tmp_path / "s"),
        "--since", "2027-01-15T08:00:00Z", "--until", "2027-01-15T08:01:30Z",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "91 ticks" in out.stderr and "in 4 queries" in out.stderr
    with StoreReader(tmp_path / "s") as reader:
        rows = reader.sql("SELECT count(*) AS n, count(DISTINCT ts) AS t, sum(power_mw) AS p FROM gpu")
    assert rows.to_pylist() == [{"n": 91 * 4, "t": 91, "p": 91 * sum(round(w * 1000) for w in POWER_W)}]


def test_import_errors_are_one_line(api: FakeApi, tmp_path: Path) -> None:
    api.mode = "500"
    config = _config(tmp_path, api.url(""))
    out = _monitor("import", "--config", str(config.path), "--store", str(tmp_path / "s"), "--last", "1m")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("monitor: import stopped: ") and "HTTP 500" in out.stderr
    plain = tmp_path / "plain.toml"
    plain.write_text('[[tray]]\nurl = "http://10.0.0.1:9400"\n')
    out = _monitor("import", "--config", str(plain), "--store", str(tmp_path / "s"), "--last", "1m")
    assert out.returncode == 1 and "has no [promql] table" in out.stderr and out.stderr.count("\n") == 1


def test_collect_records_a_promql_rack(api: FakeApi, tmp_path: Path) -> None:
    """`monitor collect --config` with a [promql] table records the rack through the PromQL source."""
    config = _config(tmp_path, api.url(""))
    out = _monitor(
        "collect", "--config", str(config.path), "--store", str(tmp_path / "s"), "--duration", "4s"
    )
    assert out.returncode == 0, out.stderr
    with StoreReader(tmp_path / "s") as reader:
        rows = reader.sql("SELECT DISTINCT gpu, power_mw FROM gpu WHERE state = 0 ORDER BY gpu").to_pylist()
    assert rows == [{"gpu": 24 + i, "power_mw": round(w * 1000)} for i, w in enumerate(POWER_W)]
    assert all(q["query"].endswith('rack="a"}[3000ms]') for q in api.queries)
