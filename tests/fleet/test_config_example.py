"""The full rack-config example (docs/examples/rack-18x72.toml, see docs/config.md) checked by the real
`monitor doctor` against the simulated rack: only its addresses are pointed at the simulator's loopback ports.

The example's server -> GPU table is checked against the simulator's own workload (one vLLM instance per
GPU), and doctor must find all 90 endpoints answering with the engine the example names.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from collectors.clock import SimClock
from collectors.config import load_config
from collectors.fleet_config import FleetConfig, load_rack_or_fleet
from collectors.sim import SimRack
from collectors.sim.http import SimServers
from tests.cli.test_store_commands import monitor

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
LOADED_TIMEOUT = "timeout = 30.0"
"""The example's 2 s timeout, raised: on a loaded 2-core test machine the simulator itself can be slow."""


@pytest.fixture(scope="module")
def sim():
    rack = SimRack(seed=0, clock=SimClock(start=time.time(), speed=1.0), engines=("vllm",))
    with SimServers(rack) as servers:
        yield servers


def test_the_example_is_a_whole_rack_and_its_gpus_match_the_simulated_workload(sim: SimServers) -> None:
    example = load_config(EXAMPLES / "rack-18x72.toml")
    assert [t.tray for t in example.trays] == list(range(1, 19))
    assert len(example.servers) == 72
    truth = {inst.name: tuple(inst.gpus) for inst in sim.rack.workload.instances}
    assert example.gpus_of_server() == truth


def test_doctor_passes_the_example_against_the_simulator(sim: SimServers, tmp_path: Path) -> None:
    text = (EXAMPLES / "rack-18x72.toml").read_text()
    example = load_config(EXAMPLES / "rack-18x72.toml")
    assert sim.config is not None
    live = {t.tray: t.url for t in sim.config.trays} | {s.name: s.url for s in sim.config.servers}
    for tray in example.trays:
        text = text.replace(f'"{tray.url}"', f'"{live[tray.tray]}"')
    for server in example.servers:
        text = text.replace(f'"{server.url}"', f'"{live[server.name]}"')
    assert "10.0.1." not in text  # every address now points at the simulator
    path = tmp_path / "rack.toml"
    path.write_text(text.replace("timeout = 2.0", LOADED_TIMEOUT, 1))
    done = monitor("doctor", "--config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "90 of 90 endpoints answer" in done.stdout, done.stdout
    assert done.stdout.count("engine vllm (configured)") == 72, done.stdout
    assert "keys: 1 key remapped, ok" in done.stdout, done.stdout


def test_the_fleet_example_names_the_rack_example() -> None:
    fleet = load_rack_or_fleet(EXAMPLES / "fleet.toml")
    assert isinstance(fleet, FleetConfig) and fleet.name == "hall-b"
    assert fleet.racks == (load_config(EXAMPLES / "rack-18x72.toml"),)
