"""SimRack: the whole simulated GB300 NVL72 (72 GPUs, workload, scenario), stepped on a fixed grid."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pynvml

from collectors.clock import Clock, WallClock
from collectors.rack import COMPUTE_TRAYS
from collectors.sim.gpu import GpuSim, make_identities
from collectors.sim.model import SimEvent
from collectors.sim.nvlink import NVLINK_TOTAL_MODES, RackNvlinkTotal, total_modes_by_tray
from collectors.sim.scenarios import XID_FALLEN_OFF_BUS, XID_NVLINK, Scenario, make_scenario
from collectors.sim.tray import SimTray
from collectors.sim.workload import Workload

if TYPE_CHECKING:
    from collectors.sim.hgx import SimHgxHost


class SimRack:
    """The simulated rack. Its state at time t depends only on seed, scenario, options and t.

    Every call on any tray first brings the whole rack up to clock.now() in fixed steps of `step_s`
    from `start`, so however often (or from however many threads) it is polled, the answers are the
    same. Reads between two steps see the state of the last step (counters and gauges alike).
    Code that reads `gpus` or `workload` directly (a /metrics server, a backfill) should call sync()
    or advance_to() and read under `lock`, as the trays do.
    """

    def __init__(
        self,
        seed: int = 0,
        scenario: str = "steady",
        clock: Clock | None = None,
        *,
        tp: int = 1,
        engines: Sequence[str] = ("vllm",),
        fault_at: float = 60.0,
        step_s: float = 1.0,
        start: float | None = None,
        nvlink_total: RackNvlinkTotal = "mixed",
    ) -> None:
        """Build the rack.

        Args:
            seed: drives identities, per-GPU variation, noise and the scenario's target.
            scenario: a key of SCENARIOS.
            clock: where time comes from; the wall clock by default.
            tp: tensor-parallel size of each serving instance (1, 2 or 4 GPUs, within a tray).
            engines: inference engine names, assigned to instances round-robin.
            fault_at: seconds after `start` at which the scenario's fault begins.
            step_s: the fixed internal step.
            start: epoch seconds of the first state; clock.now() by default.
            nvlink_total: how NVLINK_THROUGHPUT_DATA_TX/RX answer for all links (scopeId 0xFFFFFFFF):
                "ok" (the sum of the links), "zero" or "not-supported", as NVIDIA's own mock NVML
                does while the per-link counters move; "mixed" (the default): a third of the trays,
                picked by seed, answer NOT_SUPPORTED and the rest "ok", so both paths always run.
        """
        if nvlink_total not in NVLINK_TOTAL_MODES:
            raise ValueError(f"nvlink_total must be one of {', '.join(NVLINK_TOTAL_MODES)}")
        if step_s <= 0:
            raise ValueError("step_s must be > 0")
        self.seed = seed
        self.clock: Clock = clock if clock is not None else WallClock()
        self.start = self.clock.now() if start is None else start
        self.step_s = step_s
        self.lock = threading.RLock()
        self.stepped = threading.Condition(self.lock)
        """Notified after the rack advanced (event-set waiters block on it)."""
        self.steps = 0
        self._phase = 0.0
        self.workload = Workload(seed, tp=tp, engines=engines)
        self.scenario: Scenario = make_scenario(scenario, seed, self.workload, fault_at)
        rng = random.Random(f"gpus-{seed}")
        self.gpus = [GpuSim(identity, rng) for identity in make_identities(seed)]
        self.nvlink_total: RackNvlinkTotal = nvlink_total
        modes = total_modes_by_tray(nvlink_total, seed)
        for gpu in self.gpus:
            gpu.links.total_mode = modes[gpu.id.tray]
        self.events: list[SimEvent] = []
        """Every event so far, oldest first (append-only)."""
        self._noise = random.Random(f"noise-{seed}")
        for inst in self.workload.instances:
            for g in inst.gpus:
                self.gpus[g].settle(self.workload.profile.offered_load, self.workload.mem_used_mib)
        self.trays = [SimTray(self, tray) for tray in range(1, COMPUTE_TRAYS + 1)]

    @property
    def time(self) -> float:
        """Epoch seconds of the current state (the last step)."""
        return self.start + self.steps * self.step_s

    @property
    def elapsed(self) -> float:
        """Seconds from the start to the current state."""
        return self.steps * self.step_s

    def advance_to(self, t: float) -> int:
        """Step the rack until its state is the one at time `t` (never backwards); returns steps taken."""
        with self.lock:
            target = int((t - self.start) / self.step_s + 1e-9)
            taken = 0
            while self.steps < target:
                self._step()
                taken += 1
            # Where within the step the read falls; never backwards within a step (counters only grow).
            phase = min(1.0, max(0.0, (t - self.time) / self.step_s))
            if taken or phase > self._phase:
                self._phase = phase
                for gpu in self.gpus:
                    gpu.links.phase = phase
            if taken:
                self.stepped.notify_all()
            return taken

    def sync(self) -> None:
        """Bring the rack up to its clock's now."""
        self.advance_to(self.clock.now())

    def _step(self) -> None:
        dt = self.step_s
        self.steps += 1
        self.scenario.apply(self, self.elapsed)
        caps = [g.update_cap() for g in self.gpus]
        load, traffic, mix = self.workload.step(dt, caps, self._noise)
        noise = self._noise
        mem = self.workload.mem_used_mib
        for g, gpu in enumerate(self.gpus):
            ecc_before = gpu.ecc_corrected
            gpu.step(dt, load[g], traffic[g], mix[g], noise)
            if not gpu.lost:
                # Activations and CUDA graphs add a little on top of vLLM's preallocated pool.
                gpu.mem_used_mib = mem + round(1_536 * load[g]) if self.workload.process_on(g) else 0
            if gpu.ecc_corrected != ecc_before:
                self.emit(gpu.id.index, pynvml.nvmlEventTypeSingleBitEccError, 0, "corrected ECC error")

    def nvlink_carried_kib(self) -> dict[int, float]:
        """Ground truth of NVLink traffic: per GPU not lost, the DATA KiB its links have carried so far,
        sent plus received, as a read now sees it (call sync() or advance_to() first, under `lock`).

        This is the aggregate each step's traffic is added to (LinkSet.carry); every link's counter is a
        share of it, so it equals the sum over the links without reading any of them, plus what the
        links carried before a driver reload set their counters to 0 (LinkSet.carried_kib). Its
        increase between two reads over their time gap is the GPU's TX+RX rate.
        """
        with self.lock:
            return {g: gpu.links.carried_kib() for g, gpu in enumerate(self.gpus) if not gpu.lost}

    def emit(self, gpu: int, event_type: int, data: int, detail: str) -> None:
        """Record an event at the current step's time."""
        self.events.append(SimEvent(self.time, gpu, event_type, data, detail))

    def lose_gpu(self, gpu: int) -> None:
        """XID 79, then the GPU answers GPU_IS_LOST to every NVML call."""
        self.emit(gpu, pynvml.nvmlEventTypeXidCriticalError, XID_FALLEN_OFF_BUS, "GPU has fallen off the bus")
        state = self.gpus[gpu]
        state.lost = True
        state.util_gpu = state.util_mem = 0

    def recover_gpu(self, gpu: int) -> None:
        """The fault cleared (a GPU reset): the GPU answers NVML again, with the state it had."""
        self.gpus[gpu].lost = False

    def set_link(self, gpu: int, link: int, *, up: bool) -> None:
        """Take an NVLink down (a failed recovery and XID 74) or bring it back up."""
        links = self.gpus[gpu].links
        if links.active[link] == up:
            return
        if not up:
            links.recover(link, failed=True)
            self.emit(gpu, pynvml.nvmlEventTypeXidCriticalError, XID_NVLINK, f"NVLink {link} down")
        links.set_active(link, up)

    def tray_of(self, tray: int) -> SimTray:
        """The SimTray of compute tray 1..18."""
        return self.trays[tray - 1]

    def hgx_host(self, first_tray: int = 1) -> SimHgxHost:
        """An 8-GPU H100 HGX host without platform info (collectors.sim.hgx) over the GPUs of compute
        trays `first_tray` and `first_tray + 1`; use it as `pynvml` instead of those trays."""
        from collectors.sim.hgx import SimHgxHost

        return SimHgxHost(self, first_tray)
