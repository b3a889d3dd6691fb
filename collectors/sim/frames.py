"""The fast frame path of the simulated rack: Frames read straight from SimRack state, for backfills.

The driver path (18 SimTrays read by 18 NvmlCollectors) costs ~50 ms a rack tick, mostly pynvml-style
call wrapping and ctypes; a day of 1 Hz history through it takes over an hour. SimRackFrames reads the
same state directly under the rack's lock and builds, column-wise, the rows that path would produce
(gpu, nvlink, events, processes), plus the serving and serving_hist rows a scrape of each simulated
inference server's vLLM page would give. tests/sim/test_fast_frames.py holds it equal to the real
path, scenario by scenario; anything the driver path learns must be taught here too.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pynvml

from collectors.mappings.serving import ENGINES, EngineSpec
from collectors.nvml_errors import code_name
from collectors.nvml_fields import NVLINK_STATE_ACTIVE, xid_detail
from collectors.nvml_rows import EventRows
from collectors.rack import GPUS_PER_TRAY, LINKS_PER_GPU, gpu_index
from collectors.sim.gpu import MODULE_BY_DEVICE
from collectors.sim.gpu_rows import LinkRows, live_gpu_row
from collectors.sim.rack import SimRack
from collectors.sim.workload import Instance
from storage.frame import Frame, batch_from_columns, safe_batch
from storage.schemas import GPU, Q4_SCALE, SERVING, EndpointState, EventKind, GpuState

__all__ = ["SimRackFrames", "endpoint_name", "process_name", "tray_source"]

_XID = pynvml.nvmlEventTypeXidCriticalError
_INACTIVE = pynvml.NVML_NVLINK_STATE_INACTIVE
_LOST_CODE = pynvml.NVML_ERROR_GPU_IS_LOST
_LOST_DETAIL = f"{code_name(_LOST_CODE)} from nvmlDeviceGetUtilizationRates"
"""What NvmlCollector records when a GPU's first call of a tick answers GPU_IS_LOST."""
_GPU_COLUMNS = tuple(f.name for f in GPU)
_NULL_METRICS: tuple[None, ...] = (None,) * (len(_GPU_COLUMNS) - 5)
_LINK_IDS = list(range(LINKS_PER_GPU))
_PROCESS_NAMES = {"vllm": "VLLM::Worker_TP{r}", "sglang": "sglang::scheduler_TP{r}"}
_PID_BASE = 41_000
"""The sim's compute-process pid of rack GPU g is _PID_BASE + g (unique across the rack)."""
_HIST_ATTRS = {"ttft": "ttft", "itl": "itl", "e2e": "e2e", "queue": "queue", "prefill": "prefill"}
"""serving_hist.metric -> the Instance histogram that feeds it."""
KV_DIGITS = {"vllm": 6, "sglang": 2, "trtllm": 4}
"""Decimals each simulated engine's page prints KV-cache use with (collectors.sim.pages)."""


def tray_source(tray: int) -> str:
    """The events `source` of compute tray 1..18, as `monitor demo` and the backfill name its collector."""
    return f"tray{tray:02d}"


def endpoint_name(inst: Instance) -> str:
    """serving.endpoint of a simulated inference server: its name in the sim's rack config ('vllm-07')."""
    return inst.name


def process_name(engine: str, rank: int) -> str:
    """The compute process name the simulated driver reports for a tensor-parallel rank of `engine`."""
    return _PROCESS_NAMES.get(engine, "trtllm-serve rank {r}").format(r=rank)


class _GpuTrack:
    """What the driver path remembers about one GPU between ticks, for its events."""

    __slots__ = ("link_states", "lost_reported", "reasons", "seen_alive", "source")

    def __init__(self, tray: int) -> None:
        self.source = tray_source(tray)
        self.link_states: list[int | None] = [None] * LINKS_PER_GPU
        self.reasons: int | None = None
        self.lost_reported = False
        self.seen_alive = False


class SimRackFrames:
    """A Source over a whole SimRack that reads its state directly (the fast path).

    Each poll(ts_ms) advances the rack to ts_ms / 1000 and returns what 18 NvmlCollectors named
    tray01..tray18 would return for that tick, merged, plus serving rows for every inference instance.

    Args:
        rack: the simulated rack; its trays are not used (no NVML calls are made).
        process_every: sample compute processes every this many ticks, as NvmlCollector does.
        serving: also produce serving and serving_hist rows.
        name: the source's name.
    """

    def __init__(
        self, rack: SimRack, *, process_every: int = 5, serving: bool = True, name: str = "sim-rack"
    ) -> None:
        """Start tracking the rack from its current state (events before now are not reported)."""
        if process_every < 1:
            raise ValueError(f"process_every must be >= 1, got {process_every}")
        self.name = name
        self.rack = rack
        self._process_every = process_every
        self._serving = serving
        self._tick = 0
        # Row order is the driver path's: trays in order, each tray's GPUs in NVML device order.
        self._order = [
            gpu_index(tray, module) for tray in range(1, len(rack.trays) + 1) for module in MODULE_BY_DEVICE
        ]
        self._track = {g: _GpuTrack(g // GPUS_PER_TRAY + 1) for g in self._order}
        with rack.lock:
            self._event_cursor = len(rack.events)
        self._link_keys: dict[tuple[int, ...], tuple[pa.Array, pa.Array]] = {}
        self._endpoint_ok: dict[int, bool] = {}
        self._hist_keys: dict[tuple[int, ...], dict[str, pa.Array]] = {}

    def close(self) -> None:
        """Nothing to free: the rack belongs to the caller."""

    def poll(self, ts_ms: int) -> Frame:
        """The rack's frame at ts_ms (epoch ms); advances the rack there first."""
        rack = self.rack
        with rack.lock:
            rack.advance_to(ts_ms / 1000)
            sample_processes = self._tick % self._process_every == 0
            self._tick += 1
            events = EventRows()
            sources: list[str] = []
            batches = self._gpu_tables(ts_ms, events, sources, sample_processes)
            if self._serving:
                batches.update(self._serving_tables(ts_ms, events, sources))
        if len(events):
            n = len(events)
            batches["events"] = safe_batch(
                "events",
                {
                    "ts": [ts_ms] * n,
                    "kind": events.kind,
                    "gpu": events.gpu,
                    "link": events.link,
                    "code": events.code,
                    "source": sources,
                    "detail": events.detail,
                },
            )
        return Frame(ts_ms=ts_ms, batches=batches)

    # -- what the NVML collectors would see ----------------------------------------------------------

    def _xids_by_tray(self) -> dict[int, list[tuple[int, int]]]:
        """New XID events since the last tick, as (gpu, xid) per tray, in the order they happened."""
        events = self.rack.events
        out: dict[int, list[tuple[int, int]]] = {}
        for event in events[self._event_cursor :]:
            if event.event_type & _XID:
                out.setdefault(event.gpu // GPUS_PER_TRAY + 1, []).append((event.gpu, event.data))
        self._event_cursor = len(events)
        return out

    def _gpu_tables(
        self, ts_ms: int, events: EventRows, sources: list[str], sample_processes: bool
    ) -> dict[str, pa.RecordBatch]:
        """gpu, nvlink and processes batches; this tick's GPU events go to `events` and `sources`."""
        xids = self._xids_by_tray()
        rows: list[tuple[Any, ...]] = []
        link_rows = LinkRows()
        procs: dict[str, list[Any]] = {"gpu": [], "pid": [], "name": [], "used_mib": []}
        current_tray = 0
        for g in self._order:
            sim, track = self.rack.gpus[g], self._track[g]
            tray = g // GPUS_PER_TRAY + 1
            if tray != current_tray:
                current_tray = tray
                for gpu, xid in xids.get(tray, ()):
                    events.add(EventKind.XID, gpu, None, xid, xid_detail(xid))
                    sources.append(track.source)
            before = len(events)
            if sim.lost:
                rows.append((ts_ms, g, sim.id.uuid, tray, int(GpuState.LOST), *_NULL_METRICS))
                self._report_lost(g, sim, track, events)
            else:
                track.seen_alive = True
                links = sim.links
                states = [NVLINK_STATE_ACTIVE if a else _INACTIVE for a in links.active]
                link_tx, link_rx = link_rows.add(g, links, states)
                events.link_changes(g, track.link_states, states)
                track.reasons = events.clocks_change(g, track.reasons, sim.reasons)
                if sample_processes and sim.mem_used_mib:
                    self._add_process(procs, g, sim.mem_used_mib)
                rows.append(live_gpu_row(ts_ms, g, tray, sim, link_tx, link_rx))
            sources += [track.source] * (len(events) - before)
        out = {
            "gpu": safe_batch("gpu", dict(zip(_GPU_COLUMNS, map(list, zip(*rows, strict=True)), strict=True)))
        }
        if link_rows.gpus:
            out["nvlink"] = link_rows.batch(ts_ms, self._link_key_arrays(tuple(link_rows.gpus)))
        if procs["gpu"]:
            procs["ts"] = [ts_ms] * len(procs["gpu"])
            out["processes"] = batch_from_columns("processes", procs)
        return out

    @staticmethod
    def _report_lost(g: int, sim: Any, track: _GpuTrack, events: EventRows) -> None:
        """gpu_lost once per loss, worded as the NVML collector words it."""
        if track.lost_reported:
            return
        track.lost_reported = True
        why = _LOST_DETAIL if track.seen_alive else "GPU_IS_LOST while reading static facts"
        events.add(EventKind.GPU_LOST, g, None, _LOST_CODE, f"{sim.id.uuid}: {why}")

    def _add_process(self, procs: dict[str, list[Any]], g: int, used_mib: int) -> None:
        """The GPU's one engine process, as nvmlDeviceGetComputeRunningProcesses would list it."""
        inst = self.rack.workload.instances[self.rack.workload.instance_of_gpu[g]]
        procs["gpu"].append(g)
        procs["pid"].append(_PID_BASE + g)
        procs["name"].append(process_name(inst.engine, inst.gpus.index(g)))
        procs["used_mib"].append(used_mib)

    def _link_key_arrays(self, linked: tuple[int, ...]) -> tuple[pa.Array, pa.Array]:
        """The nvlink gpu and link columns for these GPUs, built once per set of GPUs still present."""
        cached = self._link_keys.get(linked)
        if cached is None:
            gpu_ids = pa.array([g for g in linked for _ in _LINK_IDS], pa.int16())
            link_ids = pa.array(_LINK_IDS * len(linked), pa.int8())
            cached = self._link_keys[linked] = (gpu_ids, link_ids)
        return cached

    # -- what a scrape of the inference servers would see --------------------------------------------

    def _serving_tables(self, ts_ms: int, events: EventRows, sources: list[str]) -> dict[str, pa.RecordBatch]:
        """serving rows for every instance and serving_hist rows for those answering."""
        # Every serving column but ts, from the schema, so a new column cannot be forgotten here.
        serving: dict[str, list[Any]] = {name: [] for name in SERVING.names if name != "ts"}
        answering: list[int] = []
        counts: list[int] = []
        sums: list[float | None] = []
        for inst in self.rack.workload.instances:
            spec = ENGINES.get(inst.engine)
            endpoint = endpoint_name(inst)
            ok = inst.answering and spec is not None
            self._endpoint_change(inst, endpoint, ok, events, sources)
            row = _serving_row(inst, spec) if ok and spec is not None else {"state": int(EndpointState.DOWN)}
            row.update(endpoint=endpoint, engine=inst.engine, gpus=",".join(map(str, inst.gpus)))
            for name, column in serving.items():
                column.append(row.get(name))
            if ok and spec is not None:
                answering.append(inst.index)
                for metric, _ in spec.hists:
                    hist = getattr(inst, _HIST_ATTRS[metric])
                    buckets = hist.buckets()
                    counts += [c for _, c in buckets]
                    sums += [None] * (len(buckets) - 1)
                    sums.append(hist.sum)
        n = len(serving["endpoint"])
        out = {"serving": batch_from_columns("serving", {"ts": [ts_ms] * n, **serving})}
        if counts:
            keys = self._hist_key_arrays(tuple(answering))
            out["serving_hist"] = batch_from_columns(
                "serving_hist",
                {
                    "ts": pa.array([ts_ms] * len(counts), GPU.field("ts").type),
                    **keys,
                    "count": counts,
                    "sum_s": sums,
                },
            )
        return out

    def _endpoint_change(
        self, inst: Instance, endpoint: str, ok: bool, events: EventRows, sources: list[str]
    ) -> None:
        """endpoint_down / endpoint_up when an instance stops or starts answering, as a scrape reports it."""
        was = self._endpoint_ok.get(inst.index)
        self._endpoint_ok[inst.index] = ok
        if ok == was or (ok and was is None):
            return
        # The sim's servers refuse connections while stopped (SimServers' default down_mode).
        if ok:
            events.add(EventKind.ENDPOINT_UP, None, None, None, f"{endpoint} answering again")
        else:
            events.add(EventKind.ENDPOINT_DOWN, None, None, None, f"{endpoint}: connection refused")
        sources.append(endpoint)

    def _hist_key_arrays(self, answering: tuple[int, ...]) -> dict[str, pa.Array]:
        """serving_hist endpoint, metric and le columns for these instances, built once per set."""
        cached = self._hist_keys.get(answering)
        if cached is None:
            instances = self.rack.workload.instances
            endpoint: list[str] = []
            metric: list[str] = []
            le: list[float] = []
            for index in answering:
                inst = instances[index]
                spec = ENGINES[inst.engine]
                for name, _ in spec.hists:
                    bounds = [*getattr(inst, _HIST_ATTRS[name]).bounds, math.inf]
                    endpoint += [endpoint_name(inst)] * len(bounds)
                    metric += [name] * len(bounds)
                    le += bounds
            cached = self._hist_keys[answering] = {
                "endpoint": pa.array(endpoint, pa.string()),
                "metric": pa.array(metric, pa.string()),
                "le": pa.array(le, pa.float64()),
            }
        return cached


def _serving_row(inst: Instance, spec: EngineSpec) -> dict[str, Any]:
    """The serving row (no ts, endpoint, engine or gpus) the engine's page mapping gives for `inst`.

    Counters are the instance's own (one series each), where the mapping stores running totals of
    per-series increases from 0: between two rows, the increase read with the reset rule is the same.
    """

    digits = KV_DIGITS.get(spec.name)
    usage = inst.kv_cache_usage if digits is None else round(inst.kv_cache_usage, digits)
    kv = min(max(round(usage * Q4_SCALE), 0), Q4_SCALE)
    return {
        "model": inst.model,
        "state": int(EndpointState.OK),
        "prompt_tokens": inst.prompt_tokens if spec.prompt_tokens else None,
        "generation_tokens": inst.generation_tokens if spec.generation_tokens else None,
        "requests_ok": inst.requests_ok if spec.requests else None,
        "preemptions": inst.preemptions if spec.preemptions else None,
        "cached_tokens": inst.cached_tokens if spec.cached_tokens else None,
        "running": inst.running if spec.running else None,
        "waiting": inst.waiting if spec.waiting else None,
        "kv_cache_q4": kv if spec.kv else None,
        "dup_samples": 0,
    }
