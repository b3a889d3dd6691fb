"""A writer process for the fault tests: appends synthetic frames and prints each acknowledged ts.

Usage: python -m tests.storage.writer_child STORE STEP_MS FLUSH_S GRACE_S [MAX_TICKS]
It continues after whatever the store already holds, so it can be killed and restarted.

Environment:
    WRITER_CHILD_SLOW_MANIFEST_S: every write to a MANIFEST.json file (or a temp file of one) stops
        halfway for this long, as on a slow disk, so a kill -9 often lands inside a manifest write.
    WRITER_CHILD_PACED=1: write one tick per line read from stdin (stop at EOF), so a test sets the pace.
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

from storage.layout import MANIFEST, read_manifest
from storage.writer import StoreWriter
from tests.storage.synth import T0, frame


class HalfwayPause:
    """A file whose every write stops halfway (flushed, so the first half is on disk) for a while."""

    def __init__(self, handle: Any, pause_s: float) -> None:
        self._handle, self._pause_s = handle, pause_s

    def write(self, data: bytes) -> int:
        half = len(data) // 2
        self._handle.write(data[:half])
        self._handle.flush()
        time.sleep(self._pause_s)
        return half + self._handle.write(data[half:])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> HalfwayPause:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.__exit__(*exc)


def slow_manifest_writes(pause_s: float) -> None:
    """Route every open() of a manifest (or its temp file) for writing through HalfwayPause.

    open(), io.open(), Path.open() and os.fdopen() all end in io.open, so this catches the manifest
    however the store code writes it: in place (a kill leaves half a manifest) or via a temp file and
    a rename (a kill leaves a stray temp file, which the next writer deletes).
    """
    real_open = io.open

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        if not any(c in mode for c in "wax+"):
            return handle
        name = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.fsdecode(file)
        return HalfwayPause(handle, pause_s) if MANIFEST in os.path.basename(name) else handle

    io.open = builtins.open = open_  # type: ignore[assignment]


def main() -> None:
    """Write until killed (or MAX_TICKS, or stdin's EOF when paced), one line per appended frame."""
    root = Path(sys.argv[1])
    step_ms, flush_s, grace_s = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    max_ticks = int(sys.argv[5]) if len(sys.argv) > 5 else None
    pause_s = float(os.environ.get("WRITER_CHILD_SLOW_MANIFEST_S", "0"))
    paced = os.environ.get("WRITER_CHILD_PACED") == "1"
    if pause_s > 0:
        slow_manifest_writes(pause_s)
    first = 0
    if (root / MANIFEST).exists():
        sealed = read_manifest(root).sealed_through_ms
        first = 0 if sealed is None else (sealed - T0) // step_ms + 1
    writer = StoreWriter(
        root, flush_interval_s=flush_s, compaction="inline", grace_s=grace_s, merge_segments=8
    )
    tick = first
    while max_ticks is None or tick < first + max_ticks:
        if paced and not sys.stdin.readline():
            break
        f = frame(tick, step_ms)
        writer.append(f)
        sys.stdout.write(f"{f.ts_ms}\n")
        sys.stdout.flush()
        tick += 1
    writer.close()


if __name__ == "__main__":
    main()
