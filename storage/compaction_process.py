"""Compaction in a short-lived child process, for writers that run for days (the recorder, the live client).

Merging segments reads and sorts hundreds of thousands of rows and rolling an hour up loads DuckDB; done in
the writer's own process, both leave their peak in its resident memory for good (DuckDB's ~18 MB of code,
pyarrow.dataset's ~13 MB, and the allocator's share of a merge's buffers), in a process that otherwise
only holds a few seconds of rows. So the writer asks, from the manifest alone, whether anything is due
(Compactor.due, cheap), and only then starts `python -m storage.compaction_process`, which:

- reads the published manifest (the writer publishes every seal atomically),
- runs the same Compactor over a JournalManifest: every commit the compactor makes is applied to its
  in-memory copy (so the day step sees the hour step's files) and recorded, never published,
- writes the merged files into the store, and the journal (JSON, one step per commit) to stdout.

The writer then publishes each step through its LiveManifest, in order. The writer is the only process
that publishes, so no commit is lost; the child's inputs stay valid meanwhile, because only compaction
removes files and one compaction runs at a time, and a complete hour or day gets no new segment (the
writer refuses frames at or before sealed_through_ms). A child that fails or is stopped leaves files that
no manifest lists: the next writer start removes them (storage.opening.remove_unlisted).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

from storage.layout import FileEntry, LiveManifest, Manifest, read_manifest

log = logging.getLogger("storage.compaction")

Step = tuple[list[FileEntry], list[str]]
"""One commit of the compactor: (files added, paths removed)."""


class JournalManifest(LiveManifest):
    """The child's manifest: commits change its copy (`current`) and are recorded, never published."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        """Start from `manifest`, the store's published one."""
        super().__init__(root, manifest)
        self.steps: list[Step] = []

    def commit(
        self,
        add: Iterable[FileEntry] = (),
        remove: Iterable[str] = (),
        *,
        sealed_through_ms: int | None = None,
        grace_s: float = 0.0,
    ) -> Manifest:
        """Record one step and apply it to the copy (the writer gives the grace when it publishes)."""
        if sealed_through_ms is not None:
            raise ValueError("compaction never moves sealed_through_ms")
        added, gone = list(add), set(remove)
        old = self._manifest
        self._manifest = Manifest(
            old.generation + 1,
            old.sealed_through_ms,
            [f for f in old.files if f.path not in gone] + added,
            old.doomed,
        )
        self.steps.append((added, sorted(gone)))
        return self._manifest

    def purge(self, now_s: float | None = None) -> int:
        """Nothing: the writer deletes doomed files, after their grace, through its own manifest."""
        return 0


def steps_to_json(steps: list[Step]) -> str:
    """The journal as the child prints it."""
    return json.dumps([{"add": [asdict(f) for f in add], "remove": remove} for add, remove in steps])


def steps_from_json(text: str) -> list[Step]:
    """The journal the child printed."""
    return [([FileEntry(**f) for f in step["add"]], list(step["remove"])) for step in json.loads(text)]


class ChildCompaction:
    """Runs due compactions of a writer's store in a child process and publishes what it did.

    Args:
        live: the writer's manifest (the only publisher).
        grace_s: seconds a superseded file stays on disk for readers.
        retention_ms: per-table retention overrides.
        merge_segments: segments of the open hour merged into one part once this many exist.
        roll_lag_ms: the open hour's sealed minutes are rolled once this far behind.
    """

    def __init__(
        self,
        live: LiveManifest,
        *,
        grace_s: float,
        retention_ms: Mapping[str, int] | None,
        merge_segments: int,
        roll_lag_ms: int | None = None,
    ) -> None:
        """Compact the store behind `live`."""
        from storage.compactor import ROLL_LAG_MS, Compactor

        self.live = live
        self.grace_s = grace_s
        lag = ROLL_LAG_MS if roll_lag_ms is None else roll_lag_ms
        merging = {"merge_segments": merge_segments, "roll_lag_ms": lag}
        self.settings = {"retention_ms": dict(retention_ms or {}), **merging}
        self.planner = Compactor(live, retention_ms=retention_ms, **merging)
        self._child: subprocess.Popen[str] | None = None
        self._stopped = False
        self._guard = threading.Lock()
        self._failing = False

    def run_once(self) -> int:
        """If anything is due, compact in a child and publish its steps; purge doomed files. Files changed."""
        done = 0
        if self.planner.due():
            done += self._run_child()
        try:
            done += self.live.purge()
        except OSError as err:
            log.error("store %s: cannot delete superseded files, will retry: %s", self.live.root, err)
        return done

    def stop(self) -> None:
        """Stop a running child (the writer closes): its files are unlisted; the next start removes them."""
        with self._guard:
            self._stopped = True
            if self._child is not None and self._child.poll() is None:
                self._child.terminate()

    def _run_child(self) -> int:
        # The child logs what this process would: the compactor's level where logging is set up (collect's
        # stderr log), else warnings only, as Python's last-resort handler does (nothing routine under a TUI).
        handled = bool(logging.getLogger().handlers)
        level = logging.getLogger("storage.compactor").getEffectiveLevel() if handled else logging.WARNING
        self.settings["log_level"] = level
        argv = [
            sys.executable,
            "-m",
            "storage.compaction_process",
            str(self.live.root),
            json.dumps(self.settings),
        ]
        with self._guard:
            if self._stopped:
                return 0
            # stderr is the writer's own: the child's log lines land where the writer's do.
            self._child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        out, _ = self._child.communicate()
        code = self._child.returncode
        if code != 0 or self._stopped:
            if code != 0 and not self._stopped and not self._failing:
                log.error("store %s: compaction process exited with %s, will retry", self.live.root, code)
            self._failing = code != 0
            return 0
        self._failing = False
        done = 0
        for add, remove in steps_from_json(out):
            try:
                self.live.commit(add, remove, grace_s=self.grace_s)
            except OSError as err:
                log.error("store %s: cannot publish a compaction, will redo it: %s", self.live.root, err)
                for entry in add:
                    (self.live.root / entry.path).unlink(missing_ok=True)
                return done
            done += len(add) + len(remove)
        return done


def main(argv: list[str]) -> int:
    """The child: compact the store at argv[0] (settings JSON in argv[1]); print the journal."""
    from storage.compactor import Compactor

    root, settings = Path(argv[0]), json.loads(argv[1])
    level = int(settings.get("log_level", logging.WARNING))
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    journal = JournalManifest(root, read_manifest(root))
    retention = {str(k): int(v) for k, v in settings["retention_ms"].items()}
    merging = {k: int(settings[k]) for k in ("merge_segments", "roll_lag_ms") if k in settings}
    Compactor(journal, retention_ms=retention, **merging).run_once()
    sys.stdout.write(steps_to_json(journal.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
