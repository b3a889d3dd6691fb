"""The NVML collector: one host's GPUs (a compute tray's 4, an HGX board's 8) into gpu, nvlink, events and
processes rows.

Works on the real `pynvml` module and, unchanged, on a simulated tray (collectors.sim), which offers the
same functions, structs and NVMLError subclasses. Every per-GPU problem becomes a row state or an event:
see collectors.nvml_errors for what each NVML error means, and shared/reference/nvml.md for the calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pynvml

from collectors.nvml_errors import NVML_EXCEPTIONS, Outcome, outcome_of_code
from collectors.nvml_events import XidEvents, handle_key
from collectors.nvml_fields import (
    FI_NVLINK_STATE,
    LINK_COLUMNS,
    NVLINK_STATE_ACTIVE,
    FieldPlan,
    decode_field_values,
    links_total,
)
from collectors.nvml_gpu import K_FIELDS, K_PROCESSES, BasicReads, TrackedGpu, call_nvml, read_basics
from collectors.nvml_recovery import Backoff, probe, recovered_info
from collectors.nvml_rows import EventRows
from collectors.nvml_static import (
    MIB,
    GpuInfo,
    NvmlUnavailable,
    gpu_infos,
    init_reason,
    nvml_available,
    read_facts,
)
from collectors.rack import TRAY_INDEX_BASE, TRAY_INDEX_BASES, check_tray
from storage.columns import GPU, EventKind, GpuState
from storage.plain_frame import PlainFrame

if TYPE_CHECKING:
    from storage.frame import Frame

__all__ = ["GpuInfo", "NvmlCollector", "NvmlUnavailable", "handle_key", "nvml_available"]

GPU_COLUMNS: tuple[str, ...] = tuple(f.name for f in GPU)
_METRIC_COUNT = len(GPU_COLUMNS) - 5  # after ts, gpu, uuid, tray, state
_NULL_METRICS: tuple[None, ...] = (None,) * _METRIC_COUNT


class NvmlCollector:
    """A Source over this host's GPUs through NVML.

    Args:
        nvml: the pynvml module, or a pynvml-compatible one (a simulated tray).
        name: the host, shown in events' `source` and by `monitor doctor`.
        tray: the compute tray 1..18 this host is, for GPUs whose driver has no platform info (a GB300
            tray on an older driver); without it such a host is a board of its own (an HGX H100: GPU0..7).
        tray_index_base: what nvmlPlatformInfo.trayIndex reads for compute tray 1 (rack.TRAY_INDEX_BASE).
        process_every: sample the running compute processes every this many ticks (they are the
            slowest NVML calls).

    Raises:
        NvmlUnavailable: NVML cannot be initialised here (the message is one line).
        ValueError: `tray`, `tray_index_base` or `process_every` is out of range, or the GPUs cannot be
            placed (the message is one line).
    """

    def __init__(
        self,
        nvml: Any = pynvml,
        *,
        name: str = "localhost",
        tray: int | None = None,
        tray_index_base: int = TRAY_INDEX_BASE,
        process_every: int = 5,
    ) -> None:
        """Initialise NVML, read every GPU's static facts once and register for XID events."""
        if tray is not None:
            check_tray(tray)
        if tray_index_base not in TRAY_INDEX_BASES:
            raise ValueError(f"the tray index base must be 0 or 1, not {tray_index_base}")
        if process_every < 1:
            raise ValueError(f"process_every must be >= 1, got {process_every}")
        self.name = name
        self._nvml = nvml
        self._process_every = process_every
        self._tick = 0
        self._closed = False
        self._proc_names: dict[int, str | None] = {}
        try:
            nvml.nvmlInit()
        except NVML_EXCEPTIONS as exc:
            raise NvmlUnavailable(init_reason(exc)) from None
        try:
            count = nvml.nvmlDeviceGetCount()
            facts = [read_facts(nvml, i, tray_index_base) for i in range(count)]
            infos = gpu_infos(facts, tray)
        except NVML_EXCEPTIONS as exc:
            self._shutdown()
            raise NvmlUnavailable(init_reason(exc)) from None
        except ValueError:
            self._shutdown()
            raise
        self._gpus = [
            TrackedGpu(
                info=info,
                handle=f.handle,
                plan=FieldPlan.build(info.nvlink_count),
                lost=f.lost,
                lost_detail="GPU_IS_LOST while reading static facts" if f.lost else "",
                link_states=[None] * info.nvlink_count,
            )
            for f, info in zip(facts, infos, strict=True)
        ]
        self.gpus: list[GpuInfo] = infos
        """Static facts of every GPU, in NVML order."""
        self._xids = XidEvents(
            nvml,
            [(g.handle, g.info) for g in self._gpus if g.handle is not None and not g.lost],
            lost=[g.info for g in self._gpus if g.lost],
        )

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        with contextlib.suppress(NVML_EXCEPTIONS):
            self._nvml.nvmlShutdown()

    def close(self) -> None:
        """Free the event set and shut NVML down (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._xids.close()
        self._shutdown()

    def __enter__(self) -> NvmlCollector:
        """Use as a context manager that closes on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()

    # -- polling -----------------------------------------------------------------------------------------

    def poll(self, ts_ms: int) -> Frame:
        """Collect one tick; never raises for a per-GPU or per-field problem."""
        return self.poll_plain(ts_ms).to_frame()

    def poll_plain(self, ts_ms: int) -> PlainFrame:
        """Collect one tick as column lists (what the agent renders: it never loads pyarrow)."""
        events = EventRows()
        self._xids.drain(events)
        sample_processes = self._tick % self._process_every == 0
        self._tick += 1
        rows: list[tuple[Any, ...]] = []
        links: dict[str, list[Any]] = {"gpu": [], "link": [], **{c: [] for c in LINK_COLUMNS}}
        procs: dict[str, list[Any]] = {"gpu": [], "pid": [], "name": [], "used_mib": []}
        for g in self._gpus:
            if g.backoff is not None and g.backoff.due(ts_ms):
                self._reprobe(g, g.backoff, ts_ms, events)
            info = g.info
            metrics: tuple[Any, ...] | None = None
            state = GpuState.LOST
            if not g.lost and g.handle is not None:
                metrics = self._read_gpu(g, links, procs if sample_processes else None, events)
                state = GpuState.ERROR if g.errored else GpuState.OK
            elif not g.lost:
                state = GpuState.ERROR  # no handle: the driver refused it at open
            if g.lost:
                metrics, state = None, GpuState.LOST
                if not g.lost_reported:
                    g.lost_reported = True
                    g.backoff = Backoff.after_loss(ts_ms)
                    detail = f"{info.uuid}: {g.lost_detail}"
                    events.add(EventKind.GPU_LOST, info.gpu, None, pynvml.NVML_ERROR_GPU_IS_LOST, detail)
            rows.append((ts_ms, info.gpu, info.uuid, info.tray, int(state), *(metrics or _NULL_METRICS)))
        tables = {"gpu": dict(zip(GPU_COLUMNS, map(list, zip(*rows, strict=True)), strict=True))}
        if links["gpu"]:
            tables["nvlink"] = {"ts": [ts_ms] * len(links["gpu"]), **links}
        if events:
            tables["events"] = events.columns(ts_ms, self.name)
        if procs["gpu"]:
            tables["processes"] = {"ts": [ts_ms] * len(procs["gpu"]), **procs}
        return PlainFrame.of(ts_ms, tables)

    def _read_gpu(
        self,
        g: TrackedGpu,
        links: dict[str, list[Any]],
        procs: dict[str, list[Any]] | None,
        events: EventRows,
    ) -> tuple | None:
        """Read one GPU's metrics in gpu-table column order (after ts..state); None once it is lost.

        Its nvlink rows go to `links` and, when `procs` is given, its processes to `procs`, but only
        if the GPU is still there at the end of the tick.
        """
        g.errored = False
        basics = read_basics(self._nvml, g)
        values = self._read_fields(g)
        if g.lost:
            return None
        plan, n = g.plan, g.plan.link_count
        link_cols = {
            c: plan.link_values(c, values) if values is not None else [None] * n for c in LINK_COLUMNS
        }
        states = self._link_states(g, link_cols["state"])
        running = (
            None
            if procs is None
            else call_nvml(g, K_PROCESSES, self._nvml.nvmlDeviceGetComputeRunningProcesses, g.handle)
        )
        if g.lost:
            return None
        if running:
            self._add_processes(g, running, procs)
        if n:
            links["gpu"].extend([g.info.gpu] * n)
            links["link"].extend(range(n))
            for c in LINK_COLUMNS:
                links[c].extend(link_cols[c])
            events.link_changes(g.info.gpu, g.link_states, states)
        if basics.reasons is not None:
            g.reasons = events.clocks_change(g.info.gpu, g.reasons, basics.reasons)
        if g.replan:
            self._replan(g)

        def scalar(column: str) -> Any:
            pos = plan.gpu_positions.get(column)
            return None if values is None or pos is None else values[pos]

        return gpu_metrics(g.info, basics, scalar, link_cols)

    def _read_fields(self, g: TrackedGpu) -> Sequence[Any] | None:
        """The GPU's field values in its plan's order (None when the batch gave no answer)."""
        if not g.plan.request:
            return None
        raw = call_nvml(g, K_FIELDS, self._nvml.nvmlDeviceGetFieldValues, g.handle, g.plan.request)
        if raw is None:
            return None
        values, rets = decode_field_values(raw, g.plan.unpacker)
        if any(rets):
            self._field_errors(g, rets)
        return values

    def _link_states(self, g: TrackedGpu, states: list[Any]) -> list[Any]:
        """The links' states, asking per link where field 165 is not supported."""
        for link in g.state_fallback_links:
            key = ("nvmlDeviceGetNvLinkState", link)
            enabled = call_nvml(g, key, self._nvml.nvmlDeviceGetNvLinkState, g.handle, link)
            if enabled is not None:
                states[link] = NVLINK_STATE_ACTIVE if enabled else pynvml.NVML_NVLINK_STATE_INACTIVE
        return states

    def _reprobe(self, g: TrackedGpu, backoff: Backoff, ts_ms: int, events: EventRows) -> None:
        """Probe a lost GPU; if it answers as the same GPU, read it again from this tick on.

        Its rows keep its rack index; its links are a fresh baseline (a change while it was gone is not
        a link event) and its XIDs are registered again under the new handle.
        """
        facts = probe(self._nvml, g.info)
        if facts is None:
            backoff.failed(ts_ms)
            return
        g.info = info = recovered_info(g.info, facts)
        self.gpus = [x.info for x in self._gpus]
        g.handle, g.lost, g.lost_reported, g.lost_detail, g.backoff = facts.handle, False, False, "", None
        g.reasons = None
        g.link_states = [None] * info.nvlink_count
        self._replan(g)
        self._xids.register(g.handle, info)
        detail = f"{info.uuid}: answers again after GPU_IS_LOST"
        events.add(EventKind.GPU_RECOVERED, info.gpu, None, None, detail)

    def _field_errors(self, g: TrackedGpu, rets: Sequence[int]) -> None:
        """Apply the error policy to each failed entry of a field-values batch."""
        request = g.plan.request
        for i, ret in enumerate(rets):
            if not ret:
                continue
            outcome = outcome_of_code(ret)
            if outcome is Outcome.UNSUPPORTED:
                g.unsupported_fields.add(request[i])
                g.replan = True
            elif outcome is Outcome.LOST:
                g.lost = True
                g.lost_detail = f"GPU_IS_LOST from field {request[i][0]}"

    def _replan(self, g: TrackedGpu) -> None:
        """Rebuild the request without the unsupported fields; links without field 165 use the call."""
        g.replan = False
        g.plan = FieldPlan.build(g.info.nvlink_count, g.unsupported_fields)
        g.state_fallback_links = [
            link for link in range(g.info.nvlink_count) if (FI_NVLINK_STATE, link) in g.unsupported_fields
        ]

    def _add_processes(self, g: TrackedGpu, running: Sequence[Any], procs: dict[str, list[Any]]) -> None:
        """Append the GPU's running compute processes (pid, name, used MiB)."""
        for p in running:
            used = getattr(p, "usedGpuMemory", None)
            procs["gpu"].append(g.info.gpu)
            procs["pid"].append(p.pid)
            procs["name"].append(self._process_name(p.pid))
            procs["used_mib"].append(None if used is None else used // MIB)

    def _process_name(self, pid: int) -> str | None:
        """The process's name through NVML, cached per pid (None where NVML cannot name it)."""
        if pid in self._proc_names:
            return self._proc_names[pid]
        try:
            name = self._nvml.nvmlSystemGetProcessName(pid) or None
        except NVML_EXCEPTIONS:
            name = None
        if len(self._proc_names) > 4096:  # pids come and go; keep the cache bounded
            self._proc_names.clear()
        self._proc_names[pid] = name
        return name


def gpu_metrics(
    info: GpuInfo, r: BasicReads, scalar: Callable[[str], Any], link_cols: dict[str, list[Any]]
) -> tuple[Any, ...]:
    """One GPU's metrics in gpu-table column order (after ts..state)."""
    known = [s for s in link_cols["state"] if s is not None]
    nvlink_up = sum(1 for s in known if s == NVLINK_STATE_ACTIVE) if known else None
    return (
        None if r.util is None else r.util.gpu,
        None if r.util is None else r.util.memory,
        None if r.memory is None else r.memory.used // MIB,
        info.mem_total_mib if r.memory is None else r.memory.total // MIB,
        r.power,
        info.power_limit_mw,
        r.energy,
        r.temp,
        scalar("temp_mem_c"),
        r.margin,
        r.sm_clock,
        r.mem_clock,
        r.reasons,
        None if r.pstate == pynvml.NVML_PSTATE_UNKNOWN else r.pstate,
        r.ecc_corrected,
        r.ecc_uncorrected,
        links_total(scalar("nvlink_tx_kib"), link_cols["tx_kib"]),
        links_total(scalar("nvlink_rx_kib"), link_cols["rx_kib"]),
        nvlink_up,
    )
