"""CPU ms of our answers to the questions, for the code of any checkout, to compare commits on one store.

    .venv/bin/python bench/peers/cpu_ab.py --root /tmp/base-worktree --store DIR --hours 1 --group nvlink

Imports `ours.variants` and `storage` from --root (a git worktree at the commit to measure; default this
checkout), opens the store there, and prints one JSON line: per question and variant the median CPU ms
(user + sys of this process, time.process_time) and median wall ms of --repeats runs after one warm-up,
with the load average. Run it for the base and for the branch one after the other, group by group: CPU
is the figure to compare on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def main() -> int:
    """Time every variant of the group's questions; print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--hours", type=int, default=1)
    parser.add_argument("--group", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path[:0] = [str(root), str(root / "bench" / "peers")]
    import ours
    from questions import QUESTIONS
    from run import store_window

    from storage.reader import StoreReader

    window = store_window(args.store, args.hours)
    out: dict[str, Any] = {}
    with StoreReader(args.store) as reader:
        for q in QUESTIONS:
            if q.group != args.group:
                continue
            for name, run in ours.variants(reader, q, window, "rows").items():
                run()
                cpus, walls = [], []
                for _ in range(args.repeats):
                    cpu, wall = time.process_time(), time.perf_counter()
                    run()
                    cpus.append(time.process_time() - cpu)
                    walls.append(time.perf_counter() - wall)
                out[f"{q.key}/{name}"] = {
                    "cpu_ms": round(statistics.median(cpus) * 1000, 1),
                    "wall_ms": round(statistics.median(walls) * 1000, 1),
                }
    print(json.dumps({"root": str(root), "group": args.group, "load1": os.getloadavg()[0], "questions": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
