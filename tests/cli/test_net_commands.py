"""monitor (root), agent, doctor, sim (serving), collect --config, through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collectors.clock import SimClock
from collectors.config import load_config, write_config
from collectors.sim import SimRack
from collectors.sim.http import SimServers
from monitor.cli import app
from storage.reader import StoreReader
from tests.store_checks import assert_no_duplicate_rows

ROOT = Path(__file__).resolve().parents[2]
ENTRY = "import sys; from monitor.cli import main; sys.argv = ['monitor', *sys.argv[1:]]; main()"
runner = CliRunner()


def monitor(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    """The real console entry point (its UserError handling), in a subprocess."""
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], cwd=ROOT, capture_output=True, text=True, **kw
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("monitor: ")
    return lines[0]


@pytest.fixture
def sim_rack(tmp_path: Path):
    """The simulated rack served in-process, and its config file."""
    rack = SimRack(seed=4, clock=SimClock(1_760_000_000.0))
    with SimServers(rack) as servers:
        assert servers.config is not None
        path = tmp_path / "rack.toml"
        # a generous timeout: on a loaded machine the simulator may take a while to render 90 pages
        write_config(path, replace(servers.config, timeout_s=10.0))
        yield servers, path


def test_no_config_and_no_driver_points_at_demo() -> None:
    line = one_line_error(monitor())
    assert "no NVIDIA driver" in line and "monitor demo" in line and "--config" in line


def test_bad_config_is_one_line_with_file_line_field(tmp_path: Path) -> None:
    bad = tmp_path / "rack.toml"
    bad.write_text('[[tray]]\ntray = 1\nurl = "gopher://x"\n')
    line = one_line_error(monitor("--config", str(bad)))
    assert line == f"monitor: {bad}:3: tray[1].url: 'gopher://x' is not an http:// or https:// URL"
    line = one_line_error(monitor("doctor", "--config", str(tmp_path / "absent.toml")))
    assert line.endswith("absent.toml: no such file")


def test_agent_without_a_driver() -> None:
    line = one_line_error(monitor("agent"))
    assert "no NVIDIA driver" in line
    assert one_line_error(monitor("agent", "--listen", "nohost:port")).startswith("monitor: --listen:")


def test_doctor_reports_each_endpoint(sim_rack) -> None:
    _, path = sim_rack
    result = runner.invoke(app, ["doctor", "--config", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("NVML: ")
    assert lines[1].startswith("terminal: ")
    assert lines[2].startswith("rack sim-seed4")
    tray = next(line for line in lines if "sim-tray07" in line)
    assert " ok " in tray and tray.endswith(" ms")
    server = next(line for line in lines if "vllm-05" in line)
    assert "engine vllm (configured)" in server
    assert lines[-1] == "90 of 90 endpoints answer"


def test_doctor_fails_when_an_endpoint_does_not_answer(sim_rack, tmp_path: Path) -> None:
    servers, path = sim_rack
    text = path.read_text()
    # the first server points at a port nobody listens on, and loses its engine (to be detected)
    dead_url = servers.config.servers[0].url
    text = text.replace(dead_url, "http://127.0.0.1:1/metrics").replace('engine = "vllm"\n', "", 2)
    path.write_text(text)
    result = runner.invoke(app, ["doctor", "--config", str(path)])
    assert result.exit_code == 1
    assert "error: connection refused" in next(
        line for line in result.output.splitlines() if "vllm-00" in line
    )
    assert "engine vllm (detected)" in next(line for line in result.output.splitlines() if "vllm-01" in line)
    assert "89 of 90 endpoints answer" in result.output


def test_sim_serves_and_writes_its_config(tmp_path: Path) -> None:
    config = tmp_path / "rack.toml"
    args = ["sim", "--write-config", str(config), "--engine", "sglang", "--seed", "3"]
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, *args], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()  # printed once every server listens and the config is written
        assert "18 tray agents and 72 sglang servers" in banner, banner
        rack = load_config(config)
        assert len(rack.trays) == 18 and {s.engine for s in rack.servers} == {"sglang"}
        write_config(config, replace(rack, timeout_s=10.0))
        result = runner.invoke(app, ["doctor", "--config", str(config)])
        assert result.exit_code == 0, result.output
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sim_refuses_a_symlinked_config_and_bad_options(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x")
    link = tmp_path / "rack.toml"
    os.symlink(target, link)
    line = one_line_error(monitor("sim", "--write-config", str(link)))
    assert "symlink" in line and target.read_text() == "x"
    assert "--engine" in one_line_error(monitor("sim", "--engine", "tgi"))
    assert "unknown scenario" in one_line_error(monitor("sim", "--scenario", "meteor"))


def test_collect_through_the_config(sim_rack, tmp_path: Path) -> None:
    _, path = sim_rack
    store = tmp_path / "store"
    result = runner.invoke(
        app,
        [
            "collect",
            "--config",
            str(path),
            "--store",
            str(store),
            "--interval",
            "5s",
            "--duration",
            "6s",
            "--flush",
            "1s",
        ],
    )
    assert result.exit_code == 0, result.output
    with StoreReader(store) as reader:
        served = reader.sql("SELECT count(DISTINCT endpoint) AS n FROM serving").to_pylist()[0]["n"]
        gpus = reader.sql("SELECT count(DISTINCT gpu) AS n FROM gpu").to_pylist()[0]["n"]
    assert served == 72 and gpus == 72
    assert_no_duplicate_rows(store)
