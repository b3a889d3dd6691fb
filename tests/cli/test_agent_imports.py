"""`monitor agent` stays light (issue 18: <= 50 MB, <= 1 % of a core): it never imports the TUI or the store.

The real console entry point runs in a subprocess under `python -X importtime`, on a simulated driver
(tests/cli/sim_nvml_main.py), serves one real scrape, and stops on SIGTERM; every module it imported is
in its import log. pyarrow stays allowed: the NVML collector's readings are Arrow frames, and the
simulated driver imports it anyway.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_FOR_THE_AGENT = (
    "textual",
    "duckdb",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "storage.reader",
    "monitor.tui",
)
"""Module roots the agent has no use for: the TUI, DuckDB, Parquet (the store's writer and readers)."""


def test_agent_serves_a_scrape_without_importing_the_tui_or_the_store() -> None:
    env = {**os.environ, "SIM_NVML_HOST": "tray:1", "SIM_NVML_SEED": "3", "MONITOR_STORE": ""}
    cmd = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "tests.cli.sim_nvml_main",
        "agent",
        "--listen",
        "127.0.0.1:0",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    log: list[str] = []
    url = None
    try:
        for line in proc.stderr:
            log.append(line)
            found = re.search(r"serving .* on (http://\S+/metrics)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "".join(log[-20:])
        with urllib.request.urlopen(url, timeout=30) as answer:
            page = answer.read().decode()
        assert "DCGM_FI_DEV_GPU_TEMP" in page
    finally:
        proc.send_signal(signal.SIGTERM)
        log.append(proc.stderr.read())
        proc.wait(timeout=60)
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", "".join(log), re.MULTILINE))
    assert "collectors.agent_server" in imported  # the log is the agent's own
    heavy = sorted(m for m in imported if any(m == h or m.startswith(f"{h}.") for h in NOT_FOR_THE_AGENT))
    assert heavy == [], heavy
