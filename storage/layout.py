"""Where a store keeps its files, and the manifest that says which of them are live.

A store directory looks like this (Hive-style folders, so DuckDB, Trino or Spark read it as is):

    DIR/MANIFEST.json                       the list of live files; replaced atomically
    DIR/LOCK                                held (flock) by the one writer; names it
    DIR/<table>/day=YYYY-MM-DD/<name>.parquet

A reader trusts only the manifest: a file that is not listed there is either being written or
waiting to be deleted, and is never read.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from storage.atomic import TMP_SUFFIX, is_temp_of, write_bytes

FORMAT = "rack-monitor-store"
FORMAT_VERSION = 1
"""Bumped when an older reader could misread a store; readers refuse newer versions."""
MANIFEST = "MANIFEST.json"
LOCK = "LOCK"

LEVELS = ("seg", "part", "hour", "day")
"""seg: one flush; part: merged segs of the open hour; hour and day: compacted files."""

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


class StoreError(Exception):
    """A store problem a user can act on; the message is one line."""


class NotAStoreError(StoreError):
    """The directory exists but holds no rack-monitor store."""


class StoreVersionError(StoreError):
    """The store was written by a newer rack-monitor."""


@dataclass(frozen=True)
class FileEntry:
    """One live Parquet file of one table.

    Attributes:
        table: the table (a key of schemas.TABLES or a rollup table name).
        path: relative to the store directory, with '/' separators.
        level: one of LEVELS.
        rows: row count.
        min_ts: smallest ts in the file, epoch ms.
        max_ts: largest ts in the file, epoch ms.
        bytes: file size.
    """

    table: str
    path: str
    level: str
    rows: int
    min_ts: int
    max_ts: int
    bytes: int


@dataclass
class Manifest:
    """The store's table of contents at one generation.

    Attributes:
        generation: increases by one per publication.
        sealed_through_ms: every frame with ts <= this is in a listed file (None: nothing sealed yet).
        files: the live files.
        doomed: files no longer live, as [path, delete_after epoch seconds]: readers that loaded an
            older manifest may still be reading them, so they are deleted only after a grace period.
    """

    generation: int = 0
    sealed_through_ms: int | None = None
    files: list[FileEntry] = field(default_factory=list)
    doomed: list[tuple[str, float]] = field(default_factory=list)

    def of(self, table: str) -> list[FileEntry]:
        """The live files of one table, oldest first."""
        return sorted((f for f in self.files if f.table == table), key=lambda f: f.min_ts)

    def overlapping(self, table: str, since_ms: int | None, until_ms: int | None) -> list[FileEntry]:
        """The live files of `table` that may hold rows with since_ms <= ts <= until_ms."""
        return [
            f
            for f in self.of(table)
            if (since_ms is None or f.max_ts >= since_ms) and (until_ms is None or f.min_ts <= until_ms)
        ]

    def to_json(self) -> bytes:
        """The manifest as the bytes stored in MANIFEST.json."""
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "generation": self.generation,
            "sealed_through_ms": self.sealed_through_ms,
            "files": [asdict(f) for f in self.files],
            "doomed": [list(d) for d in self.doomed],
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, where: Path) -> Manifest:
        """Parse MANIFEST.json; `where` names the store in error messages."""
        try:
            doc = json.loads(data)
            fmt, version = doc.get("format"), doc.get("version")
        except (ValueError, AttributeError):
            raise NotAStoreError(f"{where} is not a rack-monitor store ({MANIFEST} is not valid)") from None
        if fmt != FORMAT or not isinstance(version, int):
            raise NotAStoreError(f"{where} is not a rack-monitor store ({MANIFEST} is someone else's)")
        if version > FORMAT_VERSION:
            raise StoreVersionError(
                f"{where} was written by a newer rack-monitor (store format {version}; this one "
                f"reads up to {FORMAT_VERSION}): upgrade rack-monitor to read it"
            )
        return cls(
            generation=int(doc["generation"]),
            sealed_through_ms=doc.get("sealed_through_ms"),
            files=[FileEntry(**f) for f in doc["files"]],
            doomed=[(str(p), float(t)) for p, t in doc.get("doomed", [])],
        )


def read_manifest(root: Path) -> Manifest:
    """Load a store's manifest, with a clear error when `root` is not a store.

    Raises:
        NotAStoreError: no directory, or no or a foreign MANIFEST.json.
        StoreVersionError: the store is newer than this code.
    """
    if not root.is_dir():
        raise NotAStoreError(f"{root} is not a rack-monitor store (no such directory)")
    try:
        data = (root / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise NotAStoreError(
            f"{root} is not a rack-monitor store (no {MANIFEST}); record one with "
            "`monitor collect` or `monitor sim --backfill`"
        ) from None
    return Manifest.from_json(data, root)


def is_empty_dir(root: Path) -> bool:
    """True when `root` does not exist or holds nothing (a new store may be created there)."""
    return not root.exists() or (root.is_dir() and not any(root.iterdir()))


def manifest_temps(root: Path) -> list[Path]:
    """Temp files of manifests a killed writer never renamed into place (safe to delete under the lock)."""
    return [p for p in root.iterdir() if is_temp_of(p.name, MANIFEST) or p.name == MANIFEST + TMP_SUFFIX]


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Publish `manifest` atomically: readers and a restarted writer see the old one or the new one whole.

    Through storage.atomic (temp file, fsync, rename, fsync the directory); tests/mutations/run.py
    checks that the kill -9 test fails if this is ever written in place.
    """
    write_bytes(root / MANIFEST, manifest.to_json())


def day_of(ts_ms: int) -> str:
    """The UTC day of an epoch-ms time, as the `day=` folder names it."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def file_relpath(table: str, ts_ms: int, name: str) -> str:
    """Relative path of a new file of `table` in the day folder of `ts_ms`."""
    return f"{table}/day={day_of(ts_ms)}/{name}"


def unique_name(prefix: str, ts_ms: int, seq: int) -> str:
    """A file name never used before in this store (files are immutable; readers may cache footers)."""
    return f"{prefix}-{ts_ms}-{seq:06d}-{os.getpid()}-{time.time_ns() % 1_000_000_000:09d}.parquet"


def data_files(root: Path) -> Iterable[Path]:
    """Every Parquet or temp file under the table folders (for startup cleanup)."""
    for table_dir in root.iterdir():
        if table_dir.is_dir():
            yield from (p for p in table_dir.rglob("*") if p.is_file())


class LiveManifest:
    """The writer's copy of the manifest: every change is published atomically under one lock.

    The writer (adding sealed segments) and the compactor (swapping merged files) commit through
    this, so neither loses the other's change; readers only ever see a whole published manifest.
    """

    def __init__(self, root: Path, manifest: Manifest) -> None:
        """Wrap the manifest just read (or created) under `root`."""
        self.root = root
        self._manifest = manifest
        self._lock = threading.Lock()

    @property
    def current(self) -> Manifest:
        """The last published manifest (treat as read-only)."""
        return self._manifest

    def commit(
        self,
        add: Iterable[FileEntry] = (),
        remove: Iterable[str] = (),
        *,
        sealed_through_ms: int | None = None,
        grace_s: float = 0.0,
    ) -> Manifest:
        """Publish a manifest with `add` listed, `remove` unlisted and doomed after `grace_s`.

        Raises:
            OSError: the manifest could not be written (e.g. ENOSPC); nothing changed.
        """
        with self._lock:
            old = self._manifest
            gone = set(remove)
            after = time.time() + grace_s
            new = Manifest(
                generation=old.generation + 1,
                sealed_through_ms=old.sealed_through_ms if sealed_through_ms is None else sealed_through_ms,
                files=[f for f in old.files if f.path not in gone] + list(add),
                doomed=old.doomed + [(p, after) for p in sorted(gone)],
            )
            write_manifest(self.root, new)
            self._manifest = new
            return new

    def purge(self, now_s: float | None = None) -> int:
        """Delete doomed files whose grace period is over; return how many were deleted."""
        now_s = time.time() if now_s is None else now_s
        with self._lock:
            old = self._manifest
            due = [p for p, after in old.doomed if after <= now_s]
            if not due:
                return 0
            for rel in due:
                path = self.root / rel
                path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # other files may still live in this day folder
                    path.parent.rmdir()
            keep = [(p, after) for p, after in old.doomed if after > now_s]
            new = Manifest(old.generation + 1, old.sealed_through_ms, old.files, keep)
            write_manifest(self.root, new)
            self._manifest = new
            return len(due)
