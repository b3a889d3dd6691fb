"""What each memory lever buys our query process: DuckDB threads and memory_limit, how rows reach Python.

    .venv/bin/python bench/peers/memory.py --store DIR --hours 1 [--repeats 3] [--out FILE.json]

Runs ours.py (a fresh process per setting and group, so each figure is that process' own) over the
last --hours of the store's compacted hours, and prints idle RSS (after opening the store) and peak
RSS (VmHWM over the questions) per setting, with the slowest question's median ms and the CPU ms
(user + sys) of one run of every question beside it (the figure to compare on a loaded machine). The
import levers are measured apart: the RSS of a bare interpreter after importing what the query
path imports, with and without pyarrow.compute (which StoreReader now imports only in rate()).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from questions import Window
from run import run_ours, store_window

SETTINGS: dict[str, list[str]] = {
    "default (threads = cores, no limit, rows)": [],
    "the product's path only (precomputed; q1 raw)": ["--only", "precomputed"],
    "the product's path, threads=1": ["--only", "precomputed", "--threads", "1"],
    "rows through Arrow (to_pylist)": ["--fetch", "arrow"],
    "rows streamed in Arrow batches (to_arrow_reader)": ["--fetch", "batches"],
    "threads=1": ["--threads", "1"],
    "threads=2": ["--threads", "2"],
    "memory_limit=256MB": ["--memory-limit", "256MB"],
    "memory_limit=128MB": ["--memory-limit", "128MB"],
    "threads=1, memory_limit=128MB": ["--threads", "1", "--memory-limit", "128MB"],
}

IMPORTS = {
    "python": "pass",
    "duckdb": "import duckdb",
    "duckdb + pyarrow": "import duckdb, pyarrow",
    "storage.reader (pyarrow.compute lazy)": "import storage.reader",
    "storage.reader + pyarrow.compute": "import storage.reader, pyarrow.compute",
}


def import_rss_kib(statement: str) -> int:
    """VmRSS of a fresh interpreter after one import statement."""
    code = (
        f"{statement}\nimport re\nprint(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    )
    repo = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True)
    return int(done.stdout.strip())


def main() -> int:
    """Measure every setting on every group; print a table and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--hours", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--groups", default="gpu,serving,nvlink")
    parser.add_argument(
        "--settings", default="", help="comma-separated setting labels' prefixes (default all)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    window: Window = store_window(args.store, args.hours)
    results: dict[str, Any] = {
        "imports_kib": {k: import_rss_kib(v) for k, v in IMPORTS.items()},
        "settings": {},
    }
    results["load_start"] = os.getloadavg()
    chosen = [p for p in args.settings.split(",") if p]
    for label, extra in SETTINGS.items():
        if chosen and not any(label.startswith(p) for p in chosen):
            continue
        row: dict[str, Any] = {}
        for group in args.groups.split(","):
            got = run_ours(args.store, group, window, args.repeats, *extra)
            runs = [v for q in got["questions"].values() for v in q.values()]
            row[group] = {
                "idle_kib": got["idle_rss_kib"],
                "peak_kib": got["peak_rss_kib"],
                "slowest_ms": max(v["median_ms"] for v in runs),
                "cpu_ms": sum(v["cpu_ms"] for v in runs),  # every question and variant, one run each
            }
        results["settings"][label] = row
        cells = " | ".join(
            f"{r['idle_kib'] / 1024:.0f} / {r['peak_kib'] / 1024:.0f} "
            f"({r['slowest_ms']:.0f} ms, CPU {r['cpu_ms']:.0f} ms)"
            for r in row.values()
        )
        print(f"| {label} | {cells} |", flush=True)
    results["load_end"] = os.getloadavg()
    for name, kib in results["imports_kib"].items():
        print(f"import {name}: {kib / 1024:.0f} MiB")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
