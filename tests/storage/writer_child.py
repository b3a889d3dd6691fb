"""A writer process for the fault tests: appends synthetic frames and prints each acknowledged ts.

Usage: python -m tests.storage.writer_child STORE STEP_MS FLUSH_S GRACE_S [MAX_TICKS]
It continues after whatever the store already holds, so it can be killed and restarted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from storage.layout import read_manifest
from storage.writer import StoreWriter
from tests.storage.synth import T0, frame


def main() -> None:
    """Write until killed (or MAX_TICKS), one line per appended frame."""
    root = Path(sys.argv[1])
    step_ms, flush_s, grace_s = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    max_ticks = int(sys.argv[5]) if len(sys.argv) > 5 else None
    first = 0
    if (root / "MANIFEST.json").exists():
        sealed = read_manifest(root).sealed_through_ms
        first = 0 if sealed is None else (sealed - T0) // step_ms + 1
    writer = StoreWriter(
        root, flush_interval_s=flush_s, compaction="inline", grace_s=grace_s, merge_segments=8
    )
    tick = first
    while max_ticks is None or tick < first + max_ticks:
        f = frame(tick, step_ms)
        writer.append(f)
        sys.stdout.write(f"{f.ts_ms}\n")
        sys.stdout.flush()
        tick += 1
    writer.close()


if __name__ == "__main__":
    main()
