"""The collecting host's own health (psutil) as `host` rows: CPU, memory, the store's disk, network."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil
import pyarrow as pa

from storage.frame import Frame, batch_from_columns
from storage.schemas import Q4_SCALE


class HostSampler:
    """Samples this host once per tick into a one-row `host` batch.

    Args:
        disk_path: a path on the filesystem whose size and free space are reported (the store).
        hostname: the name in the `host` column; socket.gethostname() by default.
    """

    def __init__(self, disk_path: Path | str = "/", hostname: str | None = None) -> None:
        """Prime psutil's CPU counter so the first sample is a real interval."""
        self.disk_path = Path(disk_path)
        self.hostname = hostname or socket.gethostname()
        psutil.cpu_percent(interval=None)

    @property
    def name(self) -> str:
        """The host, as a Source names itself."""
        return self.hostname

    def poll(self, ts_ms: int) -> Frame:
        """One tick as a Frame, so the sampler can be polled like any Source."""
        return Frame(ts_ms, {"host": self.sample(ts_ms)})

    def close(self) -> None:
        """Nothing to release (psutil holds no handles)."""

    def sample(self, ts_ms: int) -> pa.RecordBatch:
        """One `host` row stamped `ts_ms`; a counter psutil cannot read here is null."""
        mem = psutil.virtual_memory()
        disk = _disk_usage(self.disk_path)
        io = psutil.disk_io_counters()
        net = psutil.net_io_counters()
        return batch_from_columns(
            "host",
            {
                "ts": [ts_ms],
                "host": [self.hostname],
                "cpu_util_q4": [round(psutil.cpu_percent(interval=None) / 100 * Q4_SCALE)],
                "load1_milli": [round(os.getloadavg()[0] * 1000)],
                "cpu_count": [os.cpu_count()],
                "mem_total_kib": [mem.total // 1024],
                "mem_available_kib": [mem.available // 1024],
                "swap_used_kib": [psutil.swap_memory().used // 1024],
                "disk_total_mib": [disk.total // 2**20 if disk else None],
                "disk_free_mib": [disk.free // 2**20 if disk else None],
                "disk_read_bytes": [io.read_bytes if io else None],
                "disk_write_bytes": [io.write_bytes if io else None],
                "net_rx_bytes": [net.bytes_recv if net else None],
                "net_tx_bytes": [net.bytes_sent if net else None],
            },
        )


def _disk_usage(path: Path) -> psutil._common.sdiskusage | None:
    """Usage of the filesystem holding `path` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return psutil.disk_usage(str(candidate))
            except OSError:
                return None
    return None
