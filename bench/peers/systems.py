"""What each peer needs around its server: installing it, loading the text, waiting for compaction, measuring.

Sizes are apparent file sizes (sum of st_size) of the data a system keeps for the samples: Prometheus'
block directories (chunks, index, meta, tombstones), VictoriaMetrics' data/ and indexdb/, our Parquet
files. Sample counts come from the systems themselves: the blocks' meta.json numSamples, and
VictoriaMetrics' vm_rows{type=~"storage/.*"}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

from questions import Answer, Query, decode
from timing import process_cpu_s, summary, timed

from bench.peers.servers import BenchError, Server, tree_bytes

PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus", "victoria-metrics": "victoria-metrics"}
"""Binary -> the Debian package that ships it."""
POLICY_RC = Path("/usr/sbin/policy-rc.d")
REPO = Path(__file__).resolve().parents[2]


def ensure_packages() -> None:
    """Install Debian's prometheus and victoria-metrics if a binary is missing, starting no service.

    The packages' services would listen on every address (:9090, :8428), so invoke-rc.d is told to
    start nothing (policy-rc.d exit 101) for the length of the install when no policy is in place.
    """
    missing = sorted({pkg for binary, pkg in PACKAGES.items() if shutil.which(binary) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise BenchError(
            f"missing {', '.join(missing)}: run `apt-get install -y {' '.join(missing)}` as root"
        )
    placed = not POLICY_RC.exists()
    if placed:
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise BenchError(f"`{' '.join(cmd)}` failed; run `apt-get update` and try again")
    finally:
        if placed:
            POLICY_RC.unlink()


def versions() -> dict[str, str]:
    """Versions of everything measured, and the commit of our code (with '+dirty' for local changes)."""
    import platform

    import duckdb
    import pyarrow

    def out(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        except OSError:
            return ""
        return (done.stdout or done.stderr).strip()

    def deb(pkg: str) -> str:
        return out(["dpkg-query", "-W", "-f", "${Version}", pkg]) or "not from a Debian package"

    commit = out(["git", "rev-parse", "--short=12", "HEAD"]) or "unknown"
    dirty = out(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "rack-monitor": commit + ("+dirty" if dirty else ""),
        "prometheus": deb("prometheus"),
        "victoria-metrics": deb("victoria-metrics"),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "python": platform.python_version(),
    }


# --- Prometheus -------------------------------------------------------------------------------------


def promtool_load(text: Path, data_dir: Path) -> float:
    """Backfill one OpenMetrics file into blocks under data_dir; returns the seconds promtool took."""
    data_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    out = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(text), str(data_dir)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise BenchError(f"promtool failed on {text}: {out.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - began


def prometheus_wait_compaction(server: Server, timeout_s: float = 600) -> None:
    """Wait until the TSDB's first compaction pass is over.

    Prometheus triggers compaction a minute after start and then once a minute, from one loop that
    runs each pass to the end before the next trigger, so a second trigger means the first pass
    (every compaction its planner wanted) has finished.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.metrics().get("prometheus_tsdb_compactions_triggered_total", 0) >= 2:
            return
        time.sleep(5)  # polling another process' state: nothing to await
    raise BenchError(f"prometheus did not finish compacting in {timeout_s:.0f} s")


def prometheus_measure(data_dir: Path) -> dict[str, Any]:
    """Samples and bytes of the blocks in a Prometheus data directory."""
    blocks = [p for p in data_dir.iterdir() if (p / "meta.json").is_file()]
    metas = [json.loads((p / "meta.json").read_text()) for p in blocks]
    return {
        "samples": sum(m["stats"]["numSamples"] for m in metas),
        "bytes": sum(tree_bytes(p) for p in blocks),
        "dir_bytes": tree_bytes(data_dir),
        "blocks": sorted(
            f"{(m['maxTime'] - m['minTime']) / 3_600_000:.1f}h L{m['compaction']['level']}" for m in metas
        ),
    }


# --- VictoriaMetrics --------------------------------------------------------------------------------


def vm_import(server: Server, text: Path) -> float:
    """POST one text file to /api/v1/import/prometheus; returns the seconds it took."""
    began = time.perf_counter()
    with open(text, "rb") as body:
        status, answer = server.request(
            "POST",
            "/api/v1/import/prometheus",
            body=body,
            headers={"Content-Length": str(text.stat().st_size), "Content-Type": "text/plain"},
        )
    if status not in (200, 204):
        raise BenchError(f"victoria-metrics import of {text} answered {status}: {answer[:300]!r}")
    return time.perf_counter() - began


def vm_settle(server: Server, timeout_s: float = 900) -> None:
    """Flush in-memory parts, force-merge every partition, and wait until no merge runs."""
    for path in ("/internal/force_flush", "/internal/force_merge"):
        status, body = server.request("GET", path)
        if status != 200:
            raise BenchError(f"victoria-metrics {path} answered {status}: {body[:200]!r}")
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline:
        m = server.metrics()
        busy = m.get("vm_active_force_merges", 0) + sum(
            v for k, v in m.items() if k.startswith("vm_active_merges")
        )
        # The force merge starts in the background; two quiet polls in a row mean it is over.
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 2:
            return
        time.sleep(1)  # polling another process' state: nothing to await
    raise BenchError(f"victoria-metrics was still merging after {timeout_s:.0f} s")


def vm_measure(server: Server, data_dir: Path) -> dict[str, Any]:
    """Samples (vm_rows of storage parts) and bytes (data/ and indexdb/) of a VictoriaMetrics directory."""
    m = server.metrics()
    rows = sum(v for k, v in m.items() if k.startswith("vm_rows{") and 'type="storage/' in k)
    data, index = tree_bytes(data_dir / "data"), tree_bytes(data_dir / "indexdb")
    return {
        "samples": int(rows),
        "bytes": data + index,
        "index_bytes": index,
        "dir_bytes": tree_bytes(data_dir),
    }


# --- asking -----------------------------------------------------------------------------------------


def ask(server: Server, query: Query, repeats: int, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Time a question from the HTTP request to the canonical Python answer (JSON decoded and reduced).

    One warm-up call first (for VictoriaMetrics with its cache on, the call that fills the cache).
    Returns the timing summary, the answer, and the query as sent.
    """
    params = {**query.params, **(extra or {})}
    path = query.path + "?" + urllib.parse.urlencode(params)

    def run() -> Answer:
        status, body = server.request("GET", path)
        if status != 200:
            raise BenchError(f"{server.name} {path} answered {status}: {body[:300]!r}")
        return decode(body, query)

    def cpu() -> float:
        # The server's CPU (its threads) and this process' (the HTTP client, JSON decode, reduction).
        return process_cpu_s(server.pid) + time.process_time()

    times, answer, cpu_s = timed(run, repeats, cpu)
    return {
        **summary(times, cpu_s),
        "answer": answer,
        "query": query.text,
        "path": query.path,
        "params": params,
    }
