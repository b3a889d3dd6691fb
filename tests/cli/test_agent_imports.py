"""`monitor agent` stays light (issue 18: <= 50 MB, <= 1 % of a core): it never imports the TUI or the store.

The real console entry point runs in a subprocess under `python -X importtime`, on a simulated driver
(tests/cli/sim_nvml_main.py), serves one real scrape of each kind (text, and the Arrow stream our
collector asks for), and stops on SIGTERM; every module it imported is in its import log. No pyarrow
(27 MiB resident): the agent renders both answers from the NVML collector's column lists
(storage.plain_frame), the Arrow stream with nanoarrow (collectors.mappings.tray_stream). No aiohttp
(12 MiB): its server is asyncio and h11 (collectors.agent_http).

The command line itself (`import monitor.cli`, which every command pays) loads no command's work: no
pyarrow, no simulator, no poller, no HTTP client (test_the_command_line_loads_no_command_s_work).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from collectors.mappings.tray_stream import MEDIA_TYPE as ARROW

ROOT = Path(__file__).resolve().parents[2]
NOT_FOR_THE_AGENT = (
    "textual",
    "duckdb",
    "pyarrow",
    "aiohttp",
    "storage.frame",
    "storage.reader",
    "monitor.tui",
    "collectors.poller",
    "collectors.promtext",
    "collectors.mappings.serving",
    "collectors.mappings.gpu",
)
"""Module roots the agent has no use for: the TUI, DuckDB, pyarrow and the store's Arrow frames, aiohttp,
the page parser and the scrape mappings (it writes pages; our collector reads them)."""


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
        arrow = urllib.request.Request(url, headers={"Accept": ARROW})
        with urllib.request.urlopen(arrow, timeout=30) as answer:
            assert answer.headers["Content-Type"] == ARROW
            assert answer.read()[:4] == b"\xff\xff\xff\xff"  # an Arrow IPC stream's continuation marker
    finally:
        proc.send_signal(signal.SIGTERM)
        log.append(proc.stderr.read())
        proc.wait(timeout=60)
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", "".join(log), re.MULTILINE))
    assert "collectors.agent_server" in imported  # the log is the agent's own
    heavy = sorted(m for m in imported if any(m == h or m.startswith(f"{h}.") for h in NOT_FOR_THE_AGENT))
    assert heavy == [], heavy


LOADED_BY_COMMANDS = ("pyarrow", "duckdb", "textual", "aiohttp", "collectors.poller", "collectors.sim.rack")
"""What `import monitor.cli` must not load: each command imports its own work when it runs."""


def test_the_command_line_loads_no_command_s_work() -> None:
    cmd = [sys.executable, "-X", "importtime", "-c", "import monitor.cli"]
    log = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stderr
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", log, re.MULTILINE))
    assert "monitor.commands.agent" in imported
    heavy = sorted(m for m in imported if any(m == h or m.startswith(f"{h}.") for h in LOADED_BY_COMMANDS))
    assert heavy == [], heavy
