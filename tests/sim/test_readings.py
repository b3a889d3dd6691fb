"""Readings as noisy as a loaded GPU's, read through the simulated driver (SimTray's pynvml calls).

Temperatures are whole degrees that flicker under load, utilisation moves with the batch mix, power is
a noisy 1-s average in mW. Expected values come from the simulator's own state (its slow temperature,
the prompt tokens each step admitted, its energy accumulator) or from a hand calculation.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field

import pynvml
import pytest

from collectors.clock import SimClock
from collectors.rack import GPUS_PER_TRAY
from collectors.sim import SimRack

from .conftest import T0

TRAYS = (1, 6, 11, 16)
WARM_S = 60
SECONDS = 600


@dataclass
class Readings:
    """Per rack GPU, one entry per tick: what NVML answered, and the sim's own state behind it."""

    temp: dict[int, list[int]] = field(default_factory=dict)
    util: dict[int, list[int]] = field(default_factory=dict)
    power_mw: dict[int, list[int]] = field(default_factory=dict)
    energy_mj: dict[int, list[int]] = field(default_factory=dict)
    slow_temp_c: dict[int, list[float]] = field(default_factory=dict)
    prompt_tokens: dict[int, list[int]] = field(default_factory=dict)
    """The prompt tokens the GPU's server had admitted so far (its counter, one instance per GPU)."""


def read(rack: SimRack, seconds: int = SECONDS) -> Readings:
    """`seconds` ticks at 1 Hz after WARM_S, every GPU of TRAYS read through its tray's pynvml calls."""
    out = Readings()
    rack.clock.advance(WARM_S)
    trays = [rack.tray_of(t) for t in TRAYS]
    handles = []
    for tray in trays:
        tray.nvmlInit()
        for device in range(GPUS_PER_TRAY):
            h = tray.nvmlDeviceGetHandleByIndex(device)
            handles.append((tray, h, tray.gpu_indices[device]))
    for _ in range(seconds):
        rack.clock.advance(1.0)
        for tray, h, g in handles:
            out.temp.setdefault(g, []).append(tray.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU))
            out.util.setdefault(g, []).append(tray.nvmlDeviceGetUtilizationRates(h).gpu)
            out.power_mw.setdefault(g, []).append(tray.nvmlDeviceGetPowerUsage(h))
            out.energy_mj.setdefault(g, []).append(tray.nvmlDeviceGetTotalEnergyConsumption(h))
            out.slow_temp_c.setdefault(g, []).append(rack.gpus[g].temp_c)
            inst = rack.workload.instances[rack.workload.instance_of_gpu[g]]
            out.prompt_tokens.setdefault(g, []).append(inst.prompt_tokens)
    return out


def changed_share(values: list[int]) -> float:
    return sum(a != b for a, b in itertools.pairwise(values)) / (len(values) - 1)


def diffs(values: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(values)]


def test_a_loaded_gpus_temperature_flickers_by_a_degree_around_the_true_one() -> None:
    got = read(SimRack(seed=2, clock=SimClock(T0)))
    for g, temps in got.temp.items():
        share = changed_share(temps)
        # A loaded GB300's integer reading moves tick to tick (the old sim: 1 value per GPU per hour).
        assert 0.2 <= share <= 0.7, (g, share)
        steps = diffs(temps)
        assert sum(abs(d) <= 1 for d in steps) >= 0.95 * len(steps), (g, sorted(set(steps)))
        assert len(set(temps)) >= 3
        # Zero-mean flicker: over 10 minutes the readings average to the sim's thermal state.
        assert statistics.mean(temps) == pytest.approx(statistics.mean(got.slow_temp_c[g]), abs=0.5), g


def test_an_idle_gpus_temperature_is_steadier_than_a_loaded_one() -> None:
    rack = SimRack(seed=4, scenario="endpoint-down", clock=SimClock(T0), fault_at=0, tp=4)
    idle = set(rack.workload.instances[rack.scenario.fault.instance].gpus)
    assert idle <= {g for t in TRAYS for g in range((t - 1) * 4, t * 4)}, "the idle tray must be read"
    got = read(rack)
    idle_share = statistics.mean(changed_share(got.temp[g]) for g in idle)
    loaded_share = statistics.mean(changed_share(v) for g, v in got.temp.items() if g not in idle)
    assert idle_share < 0.5 * loaded_share, (idle_share, loaded_share)
    assert all(set(got.util[g]) == {0} for g in idle)


def test_utilisation_and_power_move_with_the_batch_mix() -> None:
    got = read(SimRack(seed=2, clock=SimClock(T0)))
    for g, util in got.util.items():
        # Busy, never pinned: decode leaves gaps between iterations, prefill-heavy steps fill them.
        assert min(util) >= 85 and max(util) <= 97, (g, min(util), max(util))
        assert len(set(util)) >= 5
        # The prompt tokens each tick admitted (the server's own counter) set the batch mix.
        admitted = diffs(got.prompt_tokens[g])
        assert statistics.correlation(admitted, got.util[g][1:]) > 0.3, g
        assert statistics.correlation(admitted, got.power_mw[g][1:]) > 0.2, g


def test_power_is_a_noisy_one_second_average_in_milliwatts() -> None:
    got = read(SimRack(seed=2, clock=SimClock(T0)), seconds=120)
    for g, power in got.power_mw.items():
        assert all(isinstance(p, int) for p in power)
        relative = statistics.pstdev(diffs(power)) / statistics.mean(power)
        assert 0.01 <= relative <= 0.05, (g, relative)  # tens of watts tick to tick at ~1.1 kW
        # Energy (mJ since the driver loaded) is the integral of that power, second by second.
        energy = got.energy_mj[g]
        assert energy[-1] - energy[0] == pytest.approx(sum(power[1:]), rel=0.001), g
