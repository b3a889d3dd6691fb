"""Prometheus and VictoriaMetrics as child servers: on loopback only, always stopped, measured from /proc.

Each server runs in its own process group (start_new_session), so stopping it ends everything it
spawned; `Server` is a context manager and the caller uses it in a `with`, so a failure or Ctrl-C
stops it too. After start-up the server's listening sockets are checked: anything not bound to
127.0.0.1 stops the run.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import psutil

HOST = "127.0.0.1"
"""The only address a benchmark server may bind to."""


class BenchError(Exception):
    """A benchmark step failed in a way the user can act on; the message is one line."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tree_bytes(path: Path) -> int:
    """Apparent size of every regular file under `path` (sum of st_size)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def proc_status_kib(pid: int, field: str) -> int:
    """A kB field of /proc/PID/status (VmHWM, VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field}")


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the RSS now (Linux >= 4.0: write 5 to clear_refs), so a later read is a phase's peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Server:
    """One server process on 127.0.0.1:port, started on enter and stopped (its whole group) on exit.

    Args:
        name: for messages.
        argv: the command line; it must bind to `port` on 127.0.0.1 only.
        port: its HTTP port.
        ready_path: GET path that answers 200 once the server is up.
        log_path: stdout and stderr go here.
    """

    def __init__(self, name: str, argv: list[str], port: int, ready_path: str, log_path: Path) -> None:
        """Describe the server; nothing runs until enter."""
        self.name = name
        self.argv = argv
        self.port = port
        self.ready_path = ready_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._conn: http.client.HTTPConnection | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self.proc is None:
            raise BenchError(f"{self.name} is not running")
        return self.proc.pid

    def __enter__(self) -> Server:
        """Start the server, wait until it answers, and check it listens on loopback only."""
        log = open(self.log_path, "ab")  # closed in __exit__, with the process
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self._log = log
        try:
            self._wait_ready(timeout_s=120)
            self._check_loopback_only()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after 30 s."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._log.close()

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode} at start; see {self.log_path}"
                )
            with contextlib.suppress(OSError, BenchError):
                status, _ = self.request("GET", self.ready_path)
                if status == 200:
                    return
            time.sleep(0.2)  # polling a child's port: there is nothing to await
        raise BenchError(f"{self.name} did not answer on {HOST}:{self.port} in {timeout_s:.0f} s")

    def _check_loopback_only(self) -> None:
        procs = [psutil.Process(self.pid), *psutil.Process(self.pid).children(recursive=True)]
        for p in procs:
            for conn in p.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.ip != HOST:
                    raise BenchError(
                        f"{self.name} listens on {conn.laddr.ip}:{conn.laddr.port}; refusing to go on"
                    )

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """One HTTP request on a kept-alive loopback connection; returns (status, body).

        A request with a body (a file being streamed) gets a fresh connection: the server may have
        closed an idle one, and a half-sent body cannot be replayed. A GET that finds its kept-alive
        connection closed is retried once on a new one.
        """
        if body is not None and self._conn is not None:
            self._conn.close()
            self._conn = None
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(HOST, self.port, timeout=600, blocksize=1 << 20)
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException) as err:
                self._conn.close()
                self._conn = None
                if attempt == 2 or body is not None:
                    what = f"{self.name} {method} {path[:80]}"
                    raise BenchError(f"{what}: {err!r}; see {self.log_path}") from None
        raise AssertionError("unreachable")

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET path?params and decode the JSON answer; a non-200 answer is a BenchError."""
        query = "?" + urllib.parse.urlencode(params) if params else ""
        status, body = self.request("GET", path + query)
        if status != 200:
            raise BenchError(f"{self.name} {path}{query} answered {status}: {body[:300]!r}")
        return json.loads(body)

    def metrics(self) -> dict[str, float]:
        """The server's own /metrics, as {'name{labels}': value} (comments skipped)."""
        status, body = self.request("GET", "/metrics")
        if status != 200:
            raise BenchError(f"{self.name} /metrics answered {status}")
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out


def prometheus(data_dir: Path, log_path: Path, *, max_samples: int) -> Server:
    """Prometheus over an existing TSDB directory, with no scrape targets and retention far beyond the data.

    Args:
        data_dir: --storage.tsdb.path (the backfilled blocks are already in it).
        log_path: the server's log.
        max_samples: --query.max-samples; the default (50 M) refuses a day of per-link counters.
    """
    port = free_port()
    config = data_dir.parent / f"{data_dir.name}.prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    argv = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=100y",
        f"--web.listen-address={HOST}:{port}",
        f"--query.max-samples={max_samples}",
        "--query.timeout=10m",
        "--log.level=info",
    ]
    return Server("prometheus", argv, port, "/-/ready", log_path)


def victoria_metrics(data_dir: Path, log_path: Path) -> Server:
    """VictoriaMetrics single-node over `data_dir`, keeping data of any age and with no other listeners."""
    port = free_port()
    argv = [
        "victoria-metrics",
        f"-httpListenAddr={HOST}:{port}",
        f"-storageDataPath={data_dir}",
        "-retentionPeriod=100y",
        "-search.maxQueryDuration=10m",
        # The default 30 s hides the newest points only for live data; ours ends in the past anyway.
        "-search.latencyOffset=0s",
    ]
    return Server("victoria-metrics", argv, port, "/health", log_path)
