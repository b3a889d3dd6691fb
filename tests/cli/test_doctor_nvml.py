"""`monitor doctor` checks each local GPU through NVML, here a simulated tray put in pynvml's place."""

from __future__ import annotations

import re
import sys

import pynvml
import pytest
from typer.testing import CliRunner

import collectors.nvml  # noqa: F401  (bind the real pynvml in every collector module before the swap)
from collectors.clock import SimClock
from collectors.rack import LINKS_PER_GPU, compute_tray_slot, gpu_label
from collectors.sim import SimRack
from monitor.cli import app
from monitor.errors import UserError

runner = CliRunner()
TRAY = 4  # compute tray 1..18 under test


@pytest.fixture
def rack(monkeypatch: pytest.MonkeyPatch) -> SimRack:
    """A simulated rack whose tray TRAY is this host's NVML (the `pynvml` module doctor imports)."""
    sim = SimRack(seed=11, clock=SimClock(1_760_000_000.0))
    monkeypatch.setitem(sys.modules, "pynvml", sim.trays[TRAY - 1])
    return sim


def gpu_lines(output: str) -> dict[str, str]:
    """Doctor's per-GPU lines keyed by the GPU's label."""
    lines = {}
    for line in output.splitlines():
        match = re.match(r"\s+GPU \d+ (T\d\d\.G\d|GPU\d)\s", line)
        if match:
            lines[match.group(1)] = line
    return lines


def labels() -> list[str]:
    """The tray's GPUs as an operator names them (rack.gpu_label of tray TRAY, modules 1..4)."""
    return [gpu_label((TRAY - 1) * 4 + m) for m in range(4)]


def test_healthy_tray_passes_with_one_line_per_gpu(rack: SimRack) -> None:
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("NVML: ok, 4 GPUs, driver ")
    lines = gpu_lines(result.output)
    assert sorted(lines) == labels()
    for module, label in enumerate(labels(), start=1):
        gpu = rack.gpus[(TRAY - 1) * 4 + module - 1]
        line = lines[label]
        assert gpu.id.uuid in line
        # The raw values (the simulated tray answers trayIndex counting from 0, as the GB300 capture reads),
        # then where they place the GPU.
        slot = compute_tray_slot(TRAY)
        raw = f"trayIndex={TRAY - 1} slotNumber={slot} moduleId={module} hostId=1 peerType=1 "
        assert f"platform {raw}" in line
        assert f"-> tray {TRAY} module {module} slot {slot};" in line
        assert f"{LINKS_PER_GPU} NVLinks" in line
        assert "FAILED" not in line and "warning" not in line


def test_gpu_lost_before_doctor_starts_is_named_and_fails(rack: SimRack) -> None:
    victim = (TRAY - 1) * 4 + 2  # module 3
    rack.lose_gpu(victim)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("NVML: 1 of 4 GPUs FAIL")
    lines = gpu_lines(result.output)
    assert sorted(lines) == labels()  # the lost GPU keeps its place (its siblings' tray, its module)
    assert "FAILED: LOST: GPU_IS_LOST from nvmlDeviceGetHandleByIndex" in lines[gpu_label(victim)]
    for label in set(labels()) - {gpu_label(victim)}:
        assert lines[label].split()[3] == "ok", lines[label]


def test_gpu_lost_on_its_calls_after_the_handle_is_named(rack: SimRack) -> None:
    tray = rack.trays[TRAY - 1]
    tray.inject_error("nvmlDeviceGetUUID", pynvml.NVML_ERROR_GPU_IS_LOST, gpu=1)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    failed = [line for line in gpu_lines(result.output).values() if "FAILED" in line]
    assert len(failed) == 1 and "LOST: GPU_IS_LOST from nvmlDeviceGetUUID" in failed[0]
    assert failed[0].split()[1] == "1"  # NVML index 1


def test_unsupported_field_on_one_gpu_is_a_warning(rack: SimRack) -> None:
    tray = rack.trays[TRAY - 1]
    tx = pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX
    tray.inject_field_error(tx, pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=2)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = gpu_lines(result.output)
    warned = [line for line in lines.values() if "warning" in line]
    assert len(warned) == 1, result.output
    # the all-link total and each link's counter: LINKS_PER_GPU + 1 entries of field 138
    assert f"NOT_SUPPORTED from field {tx} ({LINKS_PER_GPU + 1} of " in warned[0]
    assert warned[0].split()[1] == "2"
    assert not any("FAILED" in line for line in lines.values())


def test_field_error_that_is_not_unsupported_fails(rack: SimRack) -> None:
    tray = rack.trays[TRAY - 1]
    tray.inject_field_error(pynvml.NVML_FI_DEV_MEMORY_TEMP, pynvml.NVML_ERROR_UNKNOWN, gpu=0)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    (failed,) = [line for line in gpu_lines(result.output).values() if "FAILED" in line]
    assert f"UNKNOWN from field {pynvml.NVML_FI_DEV_MEMORY_TEMP} (1 of " in failed


def test_counted_from_one_the_same_raw_trayindex_places_the_gpus_one_tray_up(rack: SimRack) -> None:
    result = runner.invoke(app, ["doctor", "--tray-index-base", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith("trayIndex counted from 1")
    lines = gpu_lines(result.output)
    assert sorted(lines) == [gpu_label((TRAY - 2) * 4 + m) for m in range(4)]
    for module in range(1, 5):
        line = lines[gpu_label((TRAY - 2) * 4 + module - 1)]
        assert f"trayIndex={TRAY - 1} " in line and f"-> tray {TRAY - 1} module {module} " in line


def test_tray_index_base_from_the_environment_and_a_bad_one_is_one_line(rack: SimRack) -> None:
    result = runner.invoke(app, ["doctor"], env={"MONITOR_TRAY_INDEX_BASE": "1"})
    assert result.exit_code == 0 and "trayIndex counted from 1" in result.output, result.output
    bad = runner.invoke(app, ["doctor", "--tray-index-base", "2"])
    assert isinstance(bad.exception, UserError)  # main() prints it as one line, exit 1
    assert str(bad.exception) == "--tray-index-base (or $MONITOR_TRAY_INDEX_BASE) must be 0 or 1, not 2"


def test_hgx_host_without_platform_info_names_gpu0_to_gpu7(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = SimRack(seed=12, clock=SimClock(1_760_000_000.0))
    host = sim.hgx_host()
    monkeypatch.setitem(sys.modules, "pynvml", host)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output  # no platform info is a warning: the board still works
    assert result.output.startswith("NVML: ok, 8 GPUs, driver ")
    lines = gpu_lines(result.output)
    assert sorted(lines) == [f"GPU{i}" for i in range(8)]
    for i in range(8):
        line = lines[f"GPU{i}"]
        assert line.split()[1] == str(i)
        assert sim.gpus[host.gpu_indices[i]].id.uuid in line
        assert "warning: NOT_SUPPORTED from nvmlDeviceGetPlatformInfo" in line
        assert f"platform info NOT_SUPPORTED -> GPU{i}, a host of its own" in line
        assert "18 NVLinks" in line
