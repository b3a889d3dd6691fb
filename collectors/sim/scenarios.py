"""Named fault scenarios for the simulated rack: healthy first, then one fault on a GPU, tray, link or server.

Each scenario picks its target deterministically from the seed, says which one it is (`fault`), and
acts on the rack once per step from `fault_at` seconds after the rack's start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from collectors.rack import COMPUTE_TRAYS, GPUS, GPUS_PER_TRAY, LINKS_PER_GPU, gpu_place

if TYPE_CHECKING:
    from collectors.sim.model import RackModel
    from collectors.sim.workload import Workload

XID_NVLINK = 74
XID_FALLEN_OFF_BUS = 79


@dataclass(frozen=True)
class Fault:
    """Where a scenario's fault is; fields that do not apply are None."""

    summary: str
    tray: int | None = None
    """Compute tray 1..18."""
    gpu: int | None = None
    """Rack GPU index 0..71."""
    link: int | None = None
    """NVLink 0..17 of `gpu`."""
    instance: int | None = None
    """Index into SimRack.workload.instances."""


class Scenario:
    """A steady, healthy rack; subclasses add one fault from `fault_at` seconds after the start."""

    name: ClassVar[str] = "steady"
    description: ClassVar[str] = "A healthy rack serving at full speed; rare corrected errors only."

    def __init__(self, seed: int, workload: Workload, fault_at: float = 60.0) -> None:
        """Pick the fault target from `seed`; `fault_at` is seconds after the rack's start."""
        self.fault_at = fault_at
        self.rng = random.Random(f"scenario-{self.name}-{seed}")
        self.workload = workload
        self.fault: Fault | None = None

    def active(self, elapsed: float) -> bool:
        """Whether the fault has begun `elapsed` seconds after the start."""
        return self.fault is not None and elapsed >= self.fault_at

    def apply(self, rack: RackModel, elapsed: float) -> None:
        """Act on the rack at the start of the step that ends `elapsed` seconds after the start."""

    def _gpu_fault(self, gpu: int, what: str, link: int | None = None) -> Fault:
        """A fault on GPU `gpu` (and its NVLink `link`), summarised 'GPU g (tray t, module m) `what`'."""
        tray, module = gpu_place(gpu)
        return Fault(
            f"GPU {gpu} (tray {tray}, module {module}) {what}",
            tray=tray,
            gpu=gpu,
            link=link,
            instance=self.workload.instance_of_gpu[gpu],
        )


class Thermal(Scenario):
    """One tray's cooling degrades: its coolant warms up over `ramp_s`, the GPUs throttle, tokens/s fall."""

    name = "thermal"
    description = (
        "One compute tray's liquid cooling degrades: its GPUs heat up, hit thermal slowdown "
        "(SwThermal, then HwSlowdown/HwThermal), their clocks and that tray's tokens/s fall."
    )
    ramp_s = 120.0
    coolant_rise_c = 38.0

    def __init__(self, seed: int, workload: Workload, fault_at: float = 60.0) -> None:
        """Pick the tray."""
        super().__init__(seed, workload, fault_at)
        tray = self.rng.randint(1, COMPUTE_TRAYS)
        self.fault = Fault(f"compute tray {tray}: coolant flow degraded", tray=tray)
        self.gpus = [(tray - 1) * GPUS_PER_TRAY + m for m in range(GPUS_PER_TRAY)]

    def apply(self, rack: RackModel, elapsed: float) -> None:
        """Raise the tray's coolant temperature along the ramp."""
        if elapsed < self.fault_at:
            return
        rise = self.coolant_rise_c * min(1.0, (elapsed - self.fault_at) / self.ramp_s)
        for g in self.gpus:
            rack.gpus[g].coolant_extra_c = rise


class NvlinkFlap(Scenario):
    """One link of one GPU flaps (symbol errors, recoveries) for `flap_s`, then goes down for good."""

    name = "nvlink-flap"
    description = (
        "One NVLink of one GPU degrades: symbol errors and link recoveries climb, then the link is "
        "declared down (state inactive, XID 74) and its traffic moves to the other 17 links."
    )
    flap_s = 45.0

    def __init__(self, seed: int, workload: Workload, fault_at: float = 60.0) -> None:
        """Pick the GPU and link."""
        super().__init__(seed, workload, fault_at)
        gpu = self.rng.randrange(GPUS)
        link = self.rng.randrange(LINKS_PER_GPU)
        self.fault = self._gpu_fault(gpu, f"NVLink {link}: flapping, then down", link=link)
        self.down = False

    def apply(self, rack: RackModel, elapsed: float) -> None:
        """Add link errors while flapping; take the link down once `flap_s` has passed."""
        fault = self.fault
        assert fault is not None and fault.gpu is not None and fault.link is not None
        if elapsed < self.fault_at or self.down:
            return
        links = rack.gpus[fault.gpu].links
        if elapsed >= self.fault_at + self.flap_s:
            self.down = True
            rack.set_link(fault.gpu, fault.link, up=False)
            return
        links.symbol_errors[fault.link] += self.rng.randint(40, 400)
        links.rcv_errors[fault.link] += self.rng.randint(0, 5)
        if self.rng.random() < 0.35:
            links.recover(fault.link, failed=False)


class GpuLost(Scenario):
    """One GPU falls off the bus (XID 79); NVML answers GPU_IS_LOST for it from then on."""

    name = "gpu-lost"
    description = (
        "One GPU falls off the bus: an XID 79 event, then every NVML call on it answers "
        "GPU_IS_LOST and its serving instance stops producing tokens."
    )

    def __init__(self, seed: int, workload: Workload, fault_at: float = 60.0) -> None:
        """Pick the GPU."""
        super().__init__(seed, workload, fault_at)
        self.fault = self._gpu_fault(self.rng.randrange(GPUS), "fell off the bus")

    def apply(self, rack: RackModel, elapsed: float) -> None:
        """Lose the GPU once."""
        fault = self.fault
        assert fault is not None and fault.gpu is not None
        if elapsed >= self.fault_at and not rack.gpus[fault.gpu].lost:
            rack.lose_gpu(fault.gpu)


class Straggler(Scenario):
    """One GPU runs slow (a stuck external power brake) and drags its instance down with it."""

    name = "straggler"
    description = (
        "One GPU runs slow (stuck power brake: HwSlowdown + HwPowerBrake, ~1.1 GHz) and drags "
        "its serving instance's throughput and latency with it."
    )
    brake = 0.55

    def __init__(self, seed: int, workload: Workload, fault_at: float = 60.0) -> None:
        """Pick the GPU."""
        super().__init__(seed, workload, fault_at)
        self.fault = self._gpu_fault(self.rng.randrange(GPUS), "runs slow")

    def apply(self, rack: RackModel, elapsed: float) -> None:
        """Hold the brake on."""
        fault = self.fault
        assert fault is not None and fault.gpu is not None
        if elapsed >= self.fault_at:
            rack.gpus[fault.gpu].brake = self.brake


class EndpointDown(Scenario):
    """One inference server stops answering; its GPUs go idle."""

    name = "endpoint-down"
    description = (
        "One inference server stops answering HTTP (Instance.answering = False); its GPUs go idle "
        "while NVML still sees them healthy."
    )

    def __init__(self, seed: int, workload: Workload, fault_at: float = 60.0) -> None:
        """Pick the instance."""
        super().__init__(seed, workload, fault_at)
        inst = workload.instances[self.rng.randrange(len(workload.instances))]
        tray, _ = gpu_place(inst.gpus[0])
        self.fault = Fault(
            f"server {inst.name} (GPUs {', '.join(map(str, inst.gpus))}) stopped answering",
            tray=tray,
            gpu=inst.gpus[0] if len(inst.gpus) == 1 else None,
            instance=inst.index,
        )

    def apply(self, rack: RackModel, elapsed: float) -> None:
        """Stop the server."""
        fault = self.fault
        assert fault is not None and fault.instance is not None
        if elapsed >= self.fault_at:
            rack.workload.instances[fault.instance].answering = False


class Restart(Scenario):
    """One tray is serviced: its servers stop, its driver is reloaded, its servers start again.

    Every counter that tray exposes restarts from 0 mid-run: NVML's (energy, NVLink bytes and errors,
    volatile ECC, clock-event times) at the reload, the servers' (tokens, requests, histograms) when they
    are back. A driver cannot be unloaded while processes hold its GPUs, hence the order.
    """

    name = "restart"
    description = (
        "One compute tray is serviced: its inference servers stop, its NVIDIA driver is reloaded "
        "(NVML's energy, NVLink and volatile ECC counters restart from 0), then the servers start "
        "again with their token and request counters from 0."
    )
    reload_after_s = 2.0
    """The driver reload, this long after the servers stopped."""
    back_after_s = 5.0
    """The servers answer again, this long after they stopped."""

    def __init__(self, seed: int, workload: Workload, fault_at: float = 60.0) -> None:
        """Pick the tray; its serving instances are the ones restarted."""
        super().__init__(seed, workload, fault_at)
        tray = self.rng.randint(1, COMPUTE_TRAYS)
        self.gpus = [(tray - 1) * GPUS_PER_TRAY + m for m in range(GPUS_PER_TRAY)]
        self.instances = sorted({workload.instance_of_gpu[g] for g in self.gpus})
        servers = ", ".join(workload.instances[i].name for i in self.instances)
        self.fault = Fault(
            f"compute tray {tray}: driver reloaded, servers {servers} restarted",
            tray=tray,
            instance=self.instances[0] if len(self.instances) == 1 else None,
        )
        self.done: set[str] = set()

    def apply(self, rack: RackModel, elapsed: float) -> None:
        """Stop the servers, reload the driver, start the servers, each once, in that order."""
        since = elapsed - self.fault_at
        if since < 0:
            return
        instances = [rack.workload.instances[i] for i in self.instances]
        if "stop" not in self.done:
            self.done.add("stop")
            for inst in instances:
                inst.stop()
        if since >= self.reload_after_s and "reload" not in self.done:
            self.done.add("reload")
            for g in self.gpus:
                rack.gpus[g].reload_driver()
        if since >= self.back_after_s and "start" not in self.done:
            self.done.add("start")
            for inst in instances:
                inst.restart()


SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls for cls in (Scenario, Thermal, NvlinkFlap, GpuLost, Straggler, EndpointDown, Restart)
}
"""Scenario name -> class; each class carries its `description`."""


def make_scenario(name: str, seed: int, workload: Workload, fault_at: float = 60.0) -> Scenario:
    """The scenario called `name`, or ValueError naming the known ones."""
    cls = SCENARIOS.get(name)
    if cls is None:
        raise ValueError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")
    if fault_at < 0:
        raise ValueError("fault_at must be >= 0 seconds")
    return cls(seed, workload, fault_at)
