"""`monitor sim --racks N`: which rack plays which scenario, one-line errors for bad options, and the fleet
config it writes pointing at one port where each rack's pages answer under its own path."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from collectors.fleet_config import FleetConfig, load_rack_or_fleet
from collectors.mappings.tray_arrow import MEDIA_TYPE, decode_tray_stream
from collectors.scrape_http import TRAY_ACCEPT
from monitor.commands.fleet_sim import rack_scenarios
from monitor.errors import UserError
from tests.cli.test_startup_failures import assert_one_clear_line
from tests.cli.test_store_commands import ROOT, monitor


def test_a_fault_targets_one_rack() -> None:
    assert rack_scenarios("gpu-lost@rack03", 4) == ["steady", "steady", "gpu-lost", "steady"]
    assert rack_scenarios("gpu-lost", 2) == ["gpu-lost", "gpu-lost"]
    assert rack_scenarios("thermal@rack01,gpu-lost@rack02", 3) == [
        "thermal",
        "gpu-lost",
        "steady",
    ]


@pytest.mark.parametrize(
    ("spec", "racks", "words"),
    [
        ("gpu-lost@rack09", 4, "no rack 'rack09'"),
        ("nope@rack01", 4, "unknown scenario 'nope'"),
        ("gpu-lost@", 4, "SCENARIO@RACK"),
        ("gpu-lost@rack01,thermal@rack01", 4, "named twice"),
        ("steady", 0, "--racks must be 1..64"),
    ],
)
def test_bad_scenarios_are_one_clear_error(spec: str, racks: int, words: str) -> None:
    with pytest.raises(UserError, match=words):
        rack_scenarios(spec, racks)


def test_the_cli_refuses_a_rack_that_does_not_exist_in_one_line() -> None:
    done = monitor("sim", "--racks", "2", "--scenario", "gpu-lost@rack05")
    assert_one_clear_line(done, "no rack 'rack05'")


def test_sim_racks_writes_a_fleet_whose_racks_answer(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    code = "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()"
    sim = subprocess.Popen(
        [sys.executable, "-c", code, "sim", "--racks", "2", "--write-config", str(path)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stderr is not None
        line = sim.stderr.readline()  # printed once the servers listen and the files are written
        assert "2 racks (36 tray agents, 144 vllm servers)" in line, line
        fleet = load_rack_or_fleet(path)
        assert isinstance(fleet, FleetConfig)
        assert [r.name for r in fleet.racks] == ["rack01", "rack02"]
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "fleet-rack01.toml",
            "fleet-rack02.toml",
            "fleet.toml",
        ]
        ports = {r.trays[0].url.split("/")[2] for r in fleet.racks}
        assert len(ports) == 1  # one port for the whole fleet
        pages = [get(r.trays[6].url) for r in fleet.racks]
        # each rack's own tray 7 answers, under its own path, with its own host name in the page
        assert "/rack01/tray07/" in fleet.racks[0].trays[6].url and 'Hostname="rack01-tray07"' in pages[0]
        assert "/rack02/tray07/" in fleet.racks[1].trays[6].url and 'Hostname="rack02-tray07"' in pages[1]
        assert "vllm:generation_tokens_total" in get(fleet.racks[1].servers[5].url)
        # The trays answer as the agent does: the Arrow stream to a collector that asks for it first.
        ask = urllib.request.Request(fleet.racks[1].trays[6].url, headers={"Accept": TRAY_ACCEPT})
        with urllib.request.urlopen(ask, timeout=30) as response:
            assert response.headers["Content-Type"].startswith(MEDIA_TYPE)
            assert decode_tray_stream(response.read()).hostname == "rack02-tray07"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get(fleet.racks[1].servers[5].url.replace("rack02", "rack09"))
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(timeout=30)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()
