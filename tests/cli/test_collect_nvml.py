"""`monitor collect --nvml`: the real console entry point in a subprocess, recording this host's GPUs into a
real store, with only the driver simulated (tests/cli/sim_nvml_main.py puts a SimRack host in pynvml's place).

Expected identities come from the simulator's ground truth: a SimRack built here with the same seed has the
same GPUs (identities are a function of the seed).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from collectors.nvml import nvml_available
from collectors.rack import BOARD_TRAY, gpu_index
from collectors.sim import SimRack
from monitor.tui.widgets.totals import TotalsBar
from storage.reader import StoreReader
from tests.replay.observed import replay_app
from tests.store_checks import assert_no_duplicate_rows

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
MONITOR = "import sys; from monitor.cli import main; sys.argv[0] = 'monitor'; main()"


def start(host: str | None, *args: str) -> subprocess.Popen[str]:
    """`monitor ARGS` in a subprocess, on the simulated `host` driver (None: the real pynvml)."""
    env = {**os.environ, "MONITOR_STORE": "", "SIM_NVML_SEED": str(SEED)}
    if host is None:
        cmd = [
            sys.executable,
            "-c",
            "import sys; from monitor.cli import main; sys.argv[0] = 'monitor'; main()",
        ]
    else:
        env["SIM_NVML_HOST"] = host
        cmd = [sys.executable, "-m", "tests.cli.sim_nvml_main"]
    return subprocess.Popen([*cmd, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def record_until_sigterm(host: str, root: Path, *extra: str) -> str:
    """Run `collect --nvml` until its first frame is in, then SIGTERM it; its stderr (exit 0 asserted).

    stderr is read on a thread so that a recorder that never logs its first frame, or never stops on
    SIGTERM, fails this test with its log (and is killed) instead of hanging the suite.
    """
    proc = start(host, "collect", "--nvml", "--store", str(root), "--flush", "1h", *extra)
    assert proc.stderr is not None
    lines: list[str] = []
    first = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "first frame" in line:
                first.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert first.wait(120), "no first frame in 120 s:\n" + "".join(lines)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(30)
    log = "".join(lines)
    assert code == 0, log
    return log


def test_hgx_host_is_recorded_by_nvml_index_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    root = tmp_path / "hgx"
    log = record_until_sigterm("hgx", root)
    assert "8x NVIDIA H100 80GB HBM3, GPU0..GPU7, trayIndex counted from 0" in log
    assert "received SIGTERM, sealing the last segment" in log
    # One source in the singular, named; the sealed time as UTC ISO 8601, not a raw epoch.
    assert re.search(r"recording 1 source \(\S+\) every 1 s into", log), log
    assert re.search(r"sealed through \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, \d+ files?", log), log
    rack = SimRack(seed=SEED)
    expected = {i: rack.gpus[g].id.uuid for i, g in enumerate(rack.hgx_host().gpu_indices)}
    with StoreReader(root) as reader:
        rows = reader.sql("SELECT DISTINCT gpu, uuid, tray FROM gpu ORDER BY gpu").to_pylist()
        links = reader.sql("SELECT count(DISTINCT gpu) AS g, max(link) AS top FROM nvlink").to_pylist()[0]
        limits = reader.sql("SELECT DISTINCT power_limit_mw, mem_total_mib FROM gpu").to_pylist()
    assert {r["gpu"]: r["uuid"] for r in rows} == expected
    assert {r["tray"] for r in rows} == {BOARD_TRAY}
    assert links == {"g": 8, "top": 17}
    assert limits == [{"power_limit_mw": 700_000, "mem_total_mib": 81_559}]
    assert_no_duplicate_rows(root)


async def test_a_recorded_board_replays_as_its_8_gpus(tmp_path: Path) -> None:
    root = tmp_path / "hgx"
    record_until_sigterm("hgx", root)
    app = replay_app(root)
    assert app.layout.kind == "board" and app.layout.gpus == tuple(range(8))
    async with app.run_test(size=(120, 40)) as pilot:
        await app.settle(pilot)
        totals = str(app.query_one(TotalsBar).render())
        assert "GPUs ok 8/8" in totals and "/72" not in totals, totals


def test_gb300_tray_host_is_recorded_in_its_rack_place(tmp_path: Path) -> None:
    root = tmp_path / "tray16"
    log = record_until_sigterm("tray:16", root, "--tray-index-base", "1")
    # The simulated driver answers trayIndex 15 for tray 16; counted from 1 that is tray 15.
    assert "4x NVIDIA GB300, T15.G1..T15.G4, trayIndex counted from 1" in log
    rack = SimRack(seed=SEED)
    uuids = {rack.gpus[g].id.uuid for g in rack.tray_of(16).gpu_indices}
    with StoreReader(root) as reader:
        rows = reader.sql("SELECT DISTINCT gpu, uuid, tray FROM gpu").to_pylist()
    assert {r["gpu"] for r in rows} == {gpu_index(15, m) for m in range(1, 5)}
    assert {r["uuid"] for r in rows} == uuids and {r["tray"] for r in rows} == {15}


def one_line_failure(proc: subprocess.Popen[str], contains: str) -> None:
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1, err
    assert err.startswith("monitor: ") and err.count("\n") == 1, err
    assert contains in err, err


@pytest.mark.parametrize(
    ("host", "args", "message"),
    [
        ("hgx", ["--tray", "3"], "this host has 8 GPUs and a GB300 compute tray holds 4: leave the tray out"),
        ("hgx", ["--sim"], "pass exactly one of --config FILE, --sim or --nvml"),
        ("hgx", ["--tray-index-base", "5"], "--tray-index-base (or $MONITOR_TRAY_INDEX_BASE) must be 0 or 1"),
        ("tray:2", ["--tray", "19"], "compute tray 19 is not 1..18"),
    ],
)
def test_user_mistakes_are_one_line(tmp_path: Path, host: str, args: list[str], message: str) -> None:
    one_line_failure(start(host, "collect", "--nvml", "--store", str(tmp_path / "s"), *args), message)


def test_tray_without_nvml_is_one_line(tmp_path: Path) -> None:
    one_line_failure(
        start("hgx", "collect", "--sim", "--tray", "3", "--store", str(tmp_path / "s")), "it goes with --nvml"
    )


def test_without_a_driver_collect_nvml_says_so_in_one_line(tmp_path: Path) -> None:
    if nvml_available() is None:
        pytest.skip("this host has a working NVIDIA driver")
    one_line_failure(
        start(None, "collect", "--nvml", "--store", str(tmp_path / "s")),
        "`monitor collect --nvml` records the GPUs of this host",
    )
