"""What makes a directory an export bundle: EXPORT.json (window, units, topology, every file it holds),
and the check that lets `monitor export --force` replace a bundle and nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collectors.rack import (
    COMPUTE_TRAYS,
    GPUS,
    GPUS_PER_TRAY,
    LINK_MBPS,
    LINKS_PER_GPU,
    gpu_label,
    gpu_place,
    physical_order,
)
from monitor.timespec import Window, iso
from storage.atomic import OutputError
from storage.layout import FileEntry
from storage.schemas import TABLES

EXPORT_MANIFEST = "EXPORT.json"
EXPORT_FORMAT = "rack-monitor-export"
EXPORT_VERSION = 1
REPORT_HTML = "report.html"

_UNIT_SUFFIXES = (
    ("_mw", "mW"),
    ("_mj", "mJ"),
    ("_mib", "MiB"),
    ("_kib", "KiB"),
    ("_mhz", "MHz"),
    ("_pct", "%"),
    ("_q4", "ratio x 10000"),
    ("_milli", "x 1/1000"),
    ("_bytes", "bytes"),
    ("_s", "s"),
    ("_c", "degC"),
)


def units_of(table: str) -> dict[str, str]:
    """Column -> unit of a raw table, read off the schema's naming convention."""
    units: dict[str, str] = {"ts": "UTC, ms"}
    for f in TABLES[table]:
        for suffix, unit in _UNIT_SUFFIXES:
            if f.name.endswith(suffix):
                units[f.name] = unit
                break
    if table == "nvlink":
        units.update(rx_errors="count", symbol_errors="count", recovery="count", recovery_failed="count")
    if table == "serving":
        units.update(
            prompt_tokens="tokens", generation_tokens="tokens", cached_tokens="tokens", requests_ok="requests"
        )
    if table == "serving_hist":
        units.update(le="s", count="observations")
    return units


def topology() -> dict[str, object]:
    """The rack's physical layout, for a bundle read where rack.py is not at hand."""
    return {
        "rack": "GB300 NVL72",
        "compute_trays": COMPUTE_TRAYS,
        "gpus_per_tray": GPUS_PER_TRAY,
        "links_per_gpu": LINKS_PER_GPU,
        "link_mbps_per_direction": LINK_MBPS,
        "link_to_switch_chip": "link k of every GPU lands on switch chip k (switch tray k//2+1, chip k%2+1)",
        "gpu_index": "(tray - 1) * 4 + (module - 1)",
        "physical_order": [f"{u.kind} {u.number}" for u in physical_order()],
        "gpus": [{"gpu": g, "label": gpu_label(g), "tray": gpu_place(g)[0]} for g in range(GPUS)],
    }


def _tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rack-monitor")
    except PackageNotFoundError:
        return "unknown"


def describe(
    store: Path,
    window: Window,
    gpus: Sequence[int] | None,
    rows: dict[str, int],
    entries: Sequence[FileEntry],
    text_files: dict[str, str],
    fmt: str,
    sources: list[str],
) -> dict[str, Any]:
    """EXPORT.json's document, less "files" (added last, once every file is written).

    Args:
        store: the store cut from.
        window: the window asked for.
        gpus: the GPUs kept (None: all).
        rows: rows written per raw table (its keys are the tables exported).
        entries: the bundle's Parquet files, raw and rollup.
        text_files: table -> its CSV or JSON Lines copy, when one was asked for.
        fmt: the copies' format (csv or json), the key naming them.
        sources: who reported the window's rows.
    """
    lo = min(e.min_ts for e in entries)
    hi = max(e.max_ts for e in entries)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "tool": {"name": "rack-monitor", "version": _tool_version()},
        "created": iso(round(time.time() * 1000)),
        "window": {
            "since": iso(window.since_ms),
            "until": iso(window.until_ms),
            "since_ms": window.since_ms,
            "until_ms": window.until_ms,
        },
        "data": {"first": iso(lo), "last": iso(hi), "first_ms": lo, "last_ms": hi},
        "gpus": list(gpus) if gpus is not None else "all",
        "source_store": str(store.resolve()),
        "sources": sources,
        "tables": {
            t: {
                "rows": n,
                "parquet": [e.path for e in entries if e.table == t],
                **({fmt: text_files[t]} if t in text_files else {}),
                "units": units_of(t),
            }
            for t, n in rows.items()
        },
        "rollups": sorted({e.table for e in entries if e.table not in TABLES}),
        "topology": topology(),
    }


def check_replaceable(out: Path) -> None:
    """Refuse to replace `out` unless it is a bundle: a real directory holding our EXPORT.json and
    no file, link or directory that EXPORT.json does not list.

    Raises:
        OutputError: one line naming what is in the way.
    """

    def refuse(why: str) -> OutputError:
        return OutputError(f"{out} is not a bundle monitor export wrote ({why}); refusing to replace it")

    where = out.resolve()
    if out.name in ("", ".", "..") or Path.cwd().resolve().is_relative_to(where):
        raise refuse("it is or holds the current directory; name the bundle directory itself")
    if not out.is_dir():
        raise refuse("not a directory")
    try:
        doc = json.loads((out / EXPORT_MANIFEST).read_bytes())
        listed = set(doc["files"]) if doc.get("format") == EXPORT_FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        listed = None
    if listed is None or (out / EXPORT_MANIFEST).is_symlink():
        raise refuse(f"no {EXPORT_MANIFEST} listing its files")
    listed.add(EXPORT_MANIFEST)
    folders = {parent.as_posix() for f in listed for parent in Path(f).parents}
    for entry in sorted(out.rglob("*")):
        rel = entry.relative_to(out).as_posix()
        ours = rel in folders if entry.is_dir() and not entry.is_symlink() else rel in listed
        if not ours or entry.is_symlink():
            raise refuse(f"{rel} is not one of its files")
