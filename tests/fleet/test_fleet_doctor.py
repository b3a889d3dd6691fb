"""`monitor doctor --config fleet.toml`: each rack checked against the simulated fleet, a verdict per rack."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collectors.fleet_config import FleetConfig, write_fleet
from monitor.cli import app
from monitor.commands.fleet_sim import SimFleet, start_fleet

runner = CliRunner()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimFleet]:
    fleet = start_fleet(2, "127.0.0.1:0", engine="vllm", scenario="steady", seed=1, speed=1.0)
    try:
        yield fleet
    finally:
        fleet.stop()


def _verdicts(output: str) -> dict[str, str]:
    """The per-rack verdict lines after the fleet line: rack name -> verdict."""
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("fleet "))
    return {line.split()[0]: line.split(None, 1)[1] for line in lines[at + 1 :] if line.startswith("  ")}


def test_doctor_checks_every_rack_of_a_fleet(sim: SimFleet, tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    write_fleet(path, sim.fleet)
    result = runner.invoke(app, ["doctor", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert _verdicts(result.output) == {"rack01": "ok", "rack02": "ok"}
    assert result.output.count("90 of 90 endpoints answer") == 2


def test_doctor_fails_the_fleet_when_one_rack_fails(sim: SimFleet, tmp_path: Path) -> None:
    racks = list(sim.fleet.racks)
    dead = replace(racks[1].trays[6], url="http://127.0.0.1:1/metrics")  # nobody listens on port 1
    racks[1] = replace(racks[1], trays=(*racks[1].trays[:6], dead, *racks[1].trays[7:]))
    path = tmp_path / "fleet.toml"
    write_fleet(path, FleetConfig(sim.fleet.name, tuple(racks)))
    result = runner.invoke(app, ["doctor", "--config", str(path)])
    assert result.exit_code == 1, result.output
    verdicts = _verdicts(result.output)
    assert verdicts["rack01"] == "ok"
    assert verdicts["rack02"] == "FAIL: 1 of 90 endpoints do not answer"
    assert str(result.exception).endswith(": 1 of 2 racks fail: rack02")  # the one-line error (UserError)
    assert "connection refused" in next(line for line in result.output.splitlines() if ":1/metrics" in line)
