"""One simulated GB300 GPU: identity (calibrated on qx-gb300.xml) and physics, stepped once a second.

Readings are as noisy as NVML's (docs/hardware-checks.md, "Simulator calibration"): integer degrees that
flicker under load, utilisation that moves with the batch mix, a 1-s average power with meter noise, and
counters that a driver reload (reload_driver) sets back to 0.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pynvml

from collectors.rack import gpu_place
from collectors.sim.nvlink import RAW_OVERHEAD, LinkSet

NAME = "NVIDIA GB300"
MAX_SM_MHZ = 2070
IDLE_SM_MHZ = 120
SM_STEP_MHZ = 7.5
"""Supported SM clocks are 2070, 2062, 2055, ... (7.5 MHz apart, truncated) in the capture."""
MEM_MHZ = 3996
MAX_VIDEO_MHZ = 1912
IDLE_VIDEO_MHZ = 600
POWER_LIMIT_MW = 1_400_000
POWER_MIN_LIMIT_MW = 200_000
MEM_TOTAL_MIB = 284_208
MEM_RESERVED_MIB = 947
T_LIMIT_C = 87.0
"""GPU temperature at which the T.Limit margin reaches 0 (idle 38 C shows a 49 C margin)."""
SW_THERMAL_MARGIN_C = 5.0
"""Below this margin the driver starts trading clocks for temperature (SwThermalSlowdown)."""
HW_RELEASE_MARGIN_C = 3.0
"""HW slowdown engages at margin <= 0 and releases only above this margin (hysteresis)."""
HW_SLOWDOWN_FACTOR = 0.45
"""HW slowdown cuts clocks by at least 2x."""
GRACE_W = 132.0
"""Grace CPU and board share of module power (idle module 488 W = 180 + 176 + ~132)."""

POWER_TAU_S = 1.5
TEMP_TAU_S = 40.0
DIE_SHARE = 0.4
"""Share of the thermal resistance between the die and the slow (cold plate) node. The die follows
power within a second, so a reading moves by DIE_SHARE * r_th per watt away from the slow average."""
SENSOR_NOISE_C = 0.1
"""Standard deviation of the temperature sensor's own noise, C (the idle floor of the flicker)."""
HOTSPOT_JITTER_C = 0.2
"""Extra standard deviation at full load, C: sub-second power bursts the 1-s power average hides."""
TYPICAL_PREFILL_SHARE = 0.25
"""Share of a serving GPU's busy time spent in prefill (compute-bound) at the workload's average mix."""
PREFILL_POWER_GAIN = 0.6
"""Dynamic power rises by this fraction per unit of prefill share above the typical mix: prefill keeps
the tensor cores busy, decode waits on HBM."""
DECODE_GAP = 0.08
"""Share of a decode-bound sample period with no kernel running (host-side scheduling between decode
iterations): why a GPU serving at capacity reads ~88-97 % busy, not 100 %."""
_alphas: dict[float, tuple[float, float]] = {}
"""dt -> (power, temperature) first-order smoothing factors; dt is fixed, so computed once."""

_BUS_DOMAINS = (0x0008, 0x0009, 0x0018, 0x0019)
MODULE_BY_DEVICE = (2, 1, 4, 3)
"""moduleId of NVML device index 0..3 on a GB300 tray (the capture's order)."""
PCI_DEVICE_ID = 0x31C210DE
PCI_SUBSYSTEM_ID = 0x21F110DE

GPU_IDLE = pynvml.nvmlClocksEventReasonGpuIdle
SW_POWER_CAP = pynvml.nvmlClocksEventReasonSwPowerCap
HW_SLOWDOWN = pynvml.nvmlClocksEventReasonHwSlowdown
SW_THERMAL = pynvml.nvmlClocksEventReasonSwThermalSlowdown
HW_THERMAL = pynvml.nvmlClocksEventReasonHwThermalSlowdown
HW_POWER_BRAKE = pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
_COUNTED = SW_POWER_CAP | SW_THERMAL | HW_THERMAL | HW_POWER_BRAKE
"""Reasons with a cumulative time counter (fields 74, 269, 270, 271)."""


@dataclass(frozen=True)
class GpuIdentity:
    """What NVML reports that never changes: names, numbers and where the GPU sits."""

    index: int
    """Rack index 0..71."""
    tray: int
    module: int
    device: int
    """NVML device index 0..3 within the tray."""
    uuid: str
    serial: str
    """Shared by the two GPUs of one superchip, as on real GB300 trays."""
    pci_domain: int
    chassis_serial: str

    @property
    def bus_id(self) -> str:
        """'00000008:06:00.0' style PCI bus id."""
        return f"{self.pci_domain:08X}:06:00.0"


def device_of_module(module: int) -> int:
    """NVML device index 0..3 of module 1..4."""
    return MODULE_BY_DEVICE.index(module)


def make_identities(seed: int) -> list[GpuIdentity]:
    """The 72 GPUs' identities, deterministic per seed, UUIDs unique across the rack."""
    rng = random.Random(f"identity-{seed}")
    chassis = f"1820{rng.randrange(10**9):09d}"
    serial_base = rng.randrange(10**8) * 10
    uuids: set[str] = set()
    out: list[GpuIdentity] = []
    for index in range(72):
        tray, module = gpu_place(index)
        while True:
            h = f"{rng.getrandbits(128):032x}"
            uuid = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            if uuid not in uuids:
                uuids.add(uuid)
                break
        superchip = (tray - 1) * 2 + (module - 1) // 2
        device = device_of_module(module)
        out.append(
            GpuIdentity(
                index=index,
                tray=tray,
                module=module,
                device=device,
                uuid=uuid,
                serial=f"165{serial_base + superchip:010d}",
                pci_domain=_BUS_DOMAINS[device],
                chassis_serial=chassis,
            )
        )
    return out


def snap_sm_clock(mhz: float) -> int:
    """The supported SM clock at or below `mhz` (2070, 2062, 2055, ...)."""
    steps = math.ceil((MAX_SM_MHZ - min(mhz, MAX_SM_MHZ)) / SM_STEP_MHZ - 1e-9)
    return max(IDLE_SM_MHZ, int(MAX_SM_MHZ - SM_STEP_MHZ * steps))


class GpuSim:
    """The evolving state of one GPU. Units are the ones NVML reports, floats inside for smooth physics."""

    __slots__ = (
        "_hw_slow",
        "brake",
        "busy_w",
        "cap",
        "coolant_c",
        "coolant_extra_c",
        "ecc_corrected",
        "ecc_corrected_before",
        "ecc_uncorrected",
        "ecc_uncorrected_before",
        "energy_before_mj",
        "energy_mj",
        "id",
        "idle_w",
        "jitter_c",
        "links",
        "lost",
        "mem_offset_c",
        "mem_used_mib",
        "power_slow_w",
        "power_w",
        "r_th",
        "reasons",
        "sm_mhz",
        "temp_c",
        "throttle_ns",
        "util_gpu",
        "util_mem",
    )

    def __init__(self, identity: GpuIdentity, rng: random.Random) -> None:
        """Draw this GPU's static variation (idle power, coolant, thermal resistance) from `rng`."""
        self.id = identity
        u = rng.random()
        self.idle_w = 172.0 + 64.0 * u * u  # most near 175-185 W, a few up to ~236 W
        self.busy_w = 1080.0 + 160.0 * rng.random()
        self.coolant_c = 23.5 + 9.0 * rng.random()
        self.r_th = 0.026 + 0.006 * rng.random()
        self.mem_offset_c = rng.choice((-1.0, 0.0, 0.0, 1.0))
        uptime_s = 86_400.0 * (1.0 + 6.0 * rng.random())
        self.energy_mj = uptime_s * 600.0 * 1000.0
        self.links = LinkSet(rng, base_kib=uptime_s * 2_000_000.0)
        self.energy_before_mj = 0.0
        """Energy used before the last driver reload (ground truth; NVML's counter lost it)."""
        self.ecc_corrected_before = rng.choice((0, 0, 0, 1, 2))
        """Corrected ECC errors before the current driver load: in the aggregate count, not the volatile."""
        self.ecc_uncorrected_before = 0
        self.ecc_corrected = 0
        self.ecc_uncorrected = 0
        self.throttle_ns = {SW_POWER_CAP: 0, SW_THERMAL: 0, HW_THERMAL: 0, HW_POWER_BRAKE: 0}
        self.coolant_extra_c = 0.0
        self.brake = 1.0
        self.lost = False
        self._hw_slow = False
        self.cap = 1.0
        self.power_w = self.power_slow_w = self.idle_w
        self.temp_c = self.coolant_c + self.r_th * self.idle_w
        self.jitter_c = 0.0
        self.sm_mhz = IDLE_SM_MHZ
        self.reasons = GPU_IDLE
        self.util_gpu = 0
        self.util_mem = 0
        self.mem_used_mib = 0

    @property
    def margin_c(self) -> float:
        """Distance to thermal slowdown (T.Limit), C."""
        return T_LIMIT_C - self.temp_c

    def settle(self, load: float, mem_used_mib: int) -> None:
        """Jump to the equilibrium of a steady `load`, so a fresh rack starts warm, not cold."""
        self.mem_used_mib = mem_used_mib
        target = self._power_target(load, 1.0)
        self.power_w = self.power_slow_w = target
        self.temp_c = self.coolant_c + self.r_th * target

    def update_cap(self) -> float:
        """Work out how fast this GPU can run this step (1 = full clocks, 0 = lost) and why not faster."""
        if self.lost:
            self.cap = 0.0
            return 0.0
        margin = self.margin_c
        reasons = 0
        cap = 1.0
        if margin <= 0.0:
            self._hw_slow = True
        elif margin >= HW_RELEASE_MARGIN_C:
            self._hw_slow = False
        if self._hw_slow:
            cap = HW_SLOWDOWN_FACTOR
            reasons |= HW_SLOWDOWN | HW_THERMAL | SW_THERMAL
        elif margin < SW_THERMAL_MARGIN_C:
            cap = 0.6 + 0.4 * margin / SW_THERMAL_MARGIN_C
            reasons |= SW_THERMAL
        if self.brake < cap:
            cap = self.brake
            reasons |= HW_SLOWDOWN | HW_POWER_BRAKE
        self.cap = cap
        self.reasons = reasons
        return cap

    def _power_target(self, load: float, clock: float) -> float:
        # Dynamic power grows faster than linearly with clock (voltage rises with frequency).
        return self.idle_w + (self.busy_w - self.idle_w) * load * clock**1.5

    def step(self, dt: float, load: float, traffic_kib_s: float, mix: float, rng: random.Random) -> None:
        """Advance `dt` seconds at `load` (0..1 of this GPU's capacity) carrying `traffic_kib_s` on NVLink,
        with `mix` of its busy time in prefill (the batch composition of this step).

        Call update_cap() first: it sets the clock ceiling and the slowdown reasons this step runs under.
        Every random draw is made here, once per step, so readings depend on time, never on polling.
        """
        self.links.begin_step()
        if self.lost:
            return
        noise = (rng.random() - 0.5) * 0.02
        if load <= 0.0:
            reasons = self.reasons | GPU_IDLE
            target = self.idle_w
            self.sm_mhz = IDLE_SM_MHZ
            self.util_gpu = 0
            self.util_mem = 0
        else:
            target, reasons = self._run(load, mix, noise)
        self.reasons = reasons
        alphas = _alphas.get(dt)
        if alphas is None:
            alphas = _alphas[dt] = (1.0 - math.exp(-dt / POWER_TAU_S), 1.0 - math.exp(-dt / TEMP_TAU_S))
        alpha_p, alpha_t = alphas
        power = self.power_w + (target - self.power_w) * alpha_p
        self.power_w = min(POWER_LIMIT_MW / 1000.0, max(self.idle_w * 0.98, power * (1.0 + noise)))
        self.power_slow_w += (self.power_w - self.power_slow_w) * alpha_t
        ambient = self.coolant_c + self.coolant_extra_c
        self.temp_c += (ambient + self.r_th * self.power_w - self.temp_c) * alpha_t
        self.jitter_c = rng.gauss(0.0, SENSOR_NOISE_C + HOTSPOT_JITTER_C * min(load, 1.0))
        self.energy_mj += self.power_w * dt * 1000.0
        if reasons & _COUNTED:
            for bit in self.throttle_ns:
                if reasons & bit:
                    self.throttle_ns[bit] += int(dt * 1e9)
        links = self.links
        if traffic_kib_s > 0.0 and links.up_count:
            tx = min(traffic_kib_s * (1.0 + noise), links.capacity_kib_s() * 0.98) * dt
            links.carry(tx, tx * (1.0 + noise * 0.5))
        r = rng.random()
        if r < 0.002 and links.up_count:
            link = int(r * 9000) % 18
            if links.active[link]:
                links.symbol_errors[link] += 1 + int(r * 1000) % 3
        elif r > 0.9999:
            self.ecc_corrected += 1

    def _run(self, load: float, mix: float, noise: float) -> tuple[float, int]:
        """Clocks and utilisation of a loaded step; returns its power target (W) and its reason bits."""
        clock = self.cap
        reasons = self.reasons
        limit_w = POWER_LIMIT_MW / 1000.0
        demand = load * (1.0 + PREFILL_POWER_GAIN * (mix - TYPICAL_PREFILL_SHARE))
        target = self._power_target(demand, clock)
        if target > limit_w:
            dyn = (self.busy_w - self.idle_w) * demand
            clock = ((limit_w - self.idle_w) / dyn) ** (2.0 / 3.0)
            target = limit_w
            reasons |= SW_POWER_CAP
        self.sm_mhz = snap_sm_clock(MAX_SM_MHZ * clock)
        busy = load * (1.0 - DECODE_GAP * (1.0 - mix)) * (1.0 + noise * 1.5)
        self.util_gpu = max(1, min(100, round(100 * busy)))
        # Decode streams weights and KV cache from HBM; prefill reuses what it loads.
        self.util_mem = round(self.util_gpu * (0.45 + 0.3 * (1.0 - mix) + 0.1 * clock))
        return target, reasons

    def reload_driver(self) -> None:
        """A driver reload: what NVML counts since the driver loaded starts again from 0.

        Energy (nvmlDeviceGetTotalEnergyConsumption: "since the driver was last reloaded"), volatile ECC
        counts ("reset each time the driver loads"; the aggregate counts keep them), the clock-event
        time counters and every NVLink counter. The energy used and the traffic carried before stay in
        the ground truth (energy_used_mj, LinkSet.carried_kib).
        """
        self.energy_before_mj += self.energy_mj
        self.energy_mj = 0.0
        self.ecc_corrected_before += self.ecc_corrected
        self.ecc_uncorrected_before += self.ecc_uncorrected
        self.ecc_corrected = self.ecc_uncorrected = 0
        self.throttle_ns = dict.fromkeys(self.throttle_ns, 0)
        self.links.reload()

    @property
    def energy_used_mj(self) -> float:
        """Ground truth: energy used since the simulation started, driver reloads or not."""
        return self.energy_before_mj + self.energy_mj

    def ecc_count(self, *, uncorrected: bool, aggregate: bool) -> int:
        """nvmlDeviceGetTotalEccErrors: volatile (since the driver loaded) or aggregate (lifetime) counts."""
        volatile = self.ecc_uncorrected if uncorrected else self.ecc_corrected
        if not aggregate:
            return volatile
        return volatile + (self.ecc_uncorrected_before if uncorrected else self.ecc_corrected_before)

    @property
    def power_mw(self) -> int:
        """Power draw as nvmlDeviceGetPowerUsage reports it (1-s average, mW)."""
        return round(self.power_w * 1000)

    @property
    def die_c(self) -> float:
        """What the GPU's sensor measures this step, C: the slow temperature, plus the die's fast swing
        with power away from its slow average, plus sensor and hot-spot jitter."""
        return self.temp_c + DIE_SHARE * self.r_th * (self.power_w - self.power_slow_w) + self.jitter_c

    @property
    def temp(self) -> int:
        """GPU temperature as NVML reports it: whole C, so it flickers by 1 C under load."""
        return round(self.die_c)

    @property
    def mem_temp(self) -> int:
        """HBM temperature (field 82), whole C."""
        return round(self.die_c + self.mem_offset_c)

    @property
    def margin(self) -> int:
        """nvmlDeviceGetMarginTemperature, whole C, from the same sensor reading as `temp`."""
        return math.floor(T_LIMIT_C - self.die_c)

    @property
    def video_mhz(self) -> int:
        """Video clock: idle 600 MHz, else scaled with the SM clock."""
        if self.sm_mhz <= IDLE_SM_MHZ:
            return IDLE_VIDEO_MHZ
        return round(MAX_VIDEO_MHZ * self.sm_mhz / MAX_SM_MHZ)

    def raw_factor(self) -> float:
        """RAW/DATA byte ratio of the throughput counters."""
        return RAW_OVERHEAD
