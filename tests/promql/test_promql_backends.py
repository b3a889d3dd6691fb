"""The rack's view models from PromQL equal those from the local store, on Prometheus and VictoriaMetrics.

The simulated rack (a GPU falls off the bus mid-run, so XID, lost-GPU and link events are in the window) is
scraped over HTTP by a ScrapeSource under the poller into a store (the local store, the independent side);
the very pages it read go into each backend with the scrape's labels and timestamps. The PromQL source then
reads the rack back from the backend under the same poller into a second store, and `monitor import` writes
a third from range reads. View models (rack snapshot and serving table) built from the stores at every tick
must be equal; VictoriaMetrics keeps 12 significant digits of a float (its documented precision for
values with more digits), so float fields are compared to 1e-11 there.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.clock import SimClock
from collectors.config import RackConfig
from collectors.config_promql import PromqlConfig
from collectors.poller import Poller
from collectors.promql_source import QUERIES_PER_TICK, PromQLSource
from collectors.sim.http import SimServers
from collectors.sim.rack import SimRack
from monitor.commands.import_promql import import_window
from monitor.replay import FrameLoader
from monitor.view.builder import SnapshotBuilder
from monitor.view.model import CellState
from monitor.view.serving import ServingBuilder
from storage.frame import Frame, batch_from_rows
from storage.head import Head
from storage.reader import StoreReader
from storage.schemas import EndpointState, EventKind, GpuState
from storage.writer import StoreWriter
from tests.promql.backends import RecordingScrape, needs_backends, openmetrics, prometheus, victoria

pytestmark = needs_backends

TICKS = 6
RACK = "r1"
SLOW_S = 120.0
"""Timeouts for a 2-core machine loaded 10 deep: nothing here waits on them unless something is broken."""


@dataclasses.dataclass
class Recorded:
    config: RackConfig
    ticks: list[int]
    om_text: str
    store: Path
    lost_gpu: int


def _poll_into_store(source: Any, root: Path, ticks: list[int]) -> None:
    """Run `source` under the poller for `ticks`, every frame into a store at `root`."""
    with StoreWriter(root, compaction="inline", flush_interval_s=600, grace_s=0.0) as writer:
        poller = Poller([source], Head(), interval=1.0, deadline=SLOW_S, sinks=[writer.store])
        try:
            for ts in ticks:
                poller.tick(ts)
        finally:
            poller.stop()
        writer.flush()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    tmp = tmp_path_factory.mktemp("promql")
    start = (int(time.time()) // 3600) * 3600 - 3 * 3600  # in the past: both backends take it as history
    clock = SimClock(start)
    rack = SimRack(seed=3, clock=clock, scenario="gpu-lost", fault_at=3, tp=4)
    fault = rack.scenario.fault
    assert fault is not None and fault.gpu is not None
    pages: list[tuple[int, dict[str, str]]] = []
    with SimServers(rack, name=RACK) as servers:
        config = servers.config
        assert config is not None
        scrape = RecordingScrape(config.trays, config.servers, name=RACK, timeout_s=SLOW_S)
        ticks = []
        with StoreWriter(tmp / "local", compaction="inline", flush_interval_s=600, grace_s=0.0) as writer:
            poller = Poller([scrape], Head(), interval=1.0, deadline=SLOW_S, sinks=[writer.store])
            try:
                for _ in range(TICKS):
                    clock.advance(1)
                    ts = round(clock.now() * 1000)
                    scrape.pages = {}
                    poller.tick(ts)
                    assert len(scrape.pages) == len(config.trays) + len(config.servers)
                    pages.append((ts, scrape.pages))
                    ticks.append(ts)
            finally:
                poller.stop()
            writer.flush()
    kinds = {t.url: "tray" for t in config.trays} | {s.url: "server" for s in config.servers}
    yield Recorded(config, ticks, openmetrics(pages, RACK, kinds), tmp / "local", fault.gpu)


def _frames(root: Path, ticks: list[int]) -> list[Frame]:
    with StoreReader(root) as reader:
        return FrameLoader(reader).frames(ticks)


def _without_alerts(frame: Frame) -> Frame:
    events = frame.batches.get("events")
    if events is None:
        return frame
    kept = [e for e in events.to_pylist() if e["kind"] not in (EventKind.ALERT, EventKind.ALERT_CLEARED)]
    batches = {k: v for k, v in frame.batches.items() if k != "events"}
    if kept:
        batches["events"] = batch_from_rows("events", kept)
    return Frame(frame.ts_ms, batches)


def _views(frames: list[Frame]) -> list[tuple[Any, Any]]:
    """(rack snapshot, serving snapshot) at every tick, each built from the frames up to it."""
    rack, serving = SnapshotBuilder(), ServingBuilder()
    out = []
    for i in range(len(frames)):
        snap = rack.build(frames[: i + 1])
        out.append((snap, serving.build(frames[: i + 1], snap)))
    return out


def _same(a: Any, b: Any, rel: float, where: str = "view") -> None:
    """a == b, floats to `rel` relative; fails naming the first field that differs."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), rel, f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], rel, f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, rel, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


BACKENDS = {"prometheus": (prometheus, 0.0), "victoria-metrics": (victoria, 1e-11)}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_views_from_promql_equal_views_from_the_local_store(
    recorded: Recorded, tmp_path: Path, backend: str
) -> None:
    start_backend, rel = BACKENDS[backend]
    with start_backend(recorded.om_text, tmp_path / backend) as url:
        config = dataclasses.replace(
            recorded.config, promql=PromqlConfig(url=url, match=(("rack", RACK),), lookback_s=3.0)
        )
        source = PromQLSource(config, timeout_s=SLOW_S)
        _poll_into_store(source, tmp_path / "live", recorded.ticks)
        assert source.queries == TICKS * QUERIES_PER_TICK == TICKS  # one query a tick
        assert source.state == EndpointState.OK, source.reason
        history = PromQLSource(config, timeout_s=SLOW_S)
        written, _ = import_window(
            history, tmp_path / "imported", recorded.ticks[0], recorded.ticks[-1], 1000
        )
        assert written == TICKS

    local = _frames(recorded.store, recorded.ticks)
    live = _frames(tmp_path / "live", recorded.ticks)
    imported = _frames(tmp_path / "imported", recorded.ticks)
    expected = _views(local)
    _same(expected, _views(live), rel, f"{backend} live")
    # imported frames also carry the alert events `collect` would have recorded: the rest is the same
    _same(expected, _views([_without_alerts(f) for f in imported]), rel, f"{backend} import")

    # and the simulator's own truth: the GPU it took off the bus reads LOST, after an XID 79
    final, _ = expected[-1]
    assert final.gpus[recorded.lost_gpu].state == CellState.LOST
    kinds = [e.kind for e in final.events]
    assert EventKind.XID in kinds and EventKind.GPU_LOST in kinds


@pytest.mark.parametrize("backend", ["victoria-metrics"])
def test_a_rack_that_stopped_reporting_goes_stale_then_down(
    recorded: Recorded, tmp_path: Path, backend: str
) -> None:
    """Past the recorded window the backend answers but holds no samples: every endpoint misses the tick."""
    start_backend, _ = BACKENDS[backend]
    with start_backend(recorded.om_text, tmp_path / backend) as url:
        config = dataclasses.replace(
            recorded.config,
            down_after=2,
            promql=PromqlConfig(url=url, match=(("rack", RACK),), lookback_s=3.0),
        )
        source = PromQLSource(config, timeout_s=SLOW_S)
        last = recorded.ticks[-1]
        frames = [source.poll(ts) for ts in (last, last + 10_000, last + 11_000)]
    assert source.state == EndpointState.OK  # the backend answered: it is the rack that is silent
    gone = frames[1].table("gpu").to_pylist()
    # stand-ins: every GPU STALE with no metrics, but the lost one stays LOST (the more important fact)
    states = {row["gpu"]: row["state"] for row in gone}
    assert states == {g: GpuState.LOST if g == recorded.lost_gpu else GpuState.STALE for g in range(72)}
    assert frames[1].table("gpu").column("power_mw").null_count == 72
    assert all(s.state == EndpointState.DOWN for s in source.statuses())
    assert all("no samples in the last 3 s" in s.reason for s in source.statuses())
    down = [e for e in frames[2].table("events").to_pylist() if e["kind"] == EventKind.ENDPOINT_DOWN]
    assert len(down) == len(source.statuses())
    serving = frames[2].table("serving").to_pylist()
    assert {row["state"] for row in serving} == {int(EndpointState.DOWN)}
