"""StoreWriter: Frames in; the head (live view) and sealed Parquet segments out.

The writer keeps the newest frames in a Head for live readers and buffers rows until a flush
interval (of data time) has passed, then seals them as segments and publishes a new manifest. A
crash loses at most the unsealed buffer, i.e. one flush interval. A failed seal (a full disk) keeps
the buffer, up to `max_pending_s`, and is retried on the next interval, so writing resumes by
itself when space returns; the live view never stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from storage.compaction_process import ChildCompaction
from storage.compactor import ROLL_LAG_MS, Compactor
from storage.frame import Frame
from storage.head import Head
from storage.layout import (
    HOUR_MS,
    MANIFEST,
    FileEntry,
    LiveManifest,
    Manifest,
    StoreError,
    file_relpath,
    read_manifest,
    unique_name,
    write_manifest,
)
from storage.opening import open_store, remove_unlisted
from storage.row_keys import KeyTuple, first_rows, key_tuples
from storage.row_order import sort_table
from storage.schemas import COUNTERS, SORT_KEYS, TABLES
from storage.segments import write_atomic

log = logging.getLogger("storage.writer")


@dataclass(frozen=True)
class WriterStatus:
    """What the writer has done, for logs and `monitor doctor`.

    Attributes:
        sealed_through_ms: every frame up to this time is on disk (None: nothing yet).
        pending_rows: rows buffered in memory, not yet sealed.
        dropped_rows: rows given up while the disk stayed full past max_pending_s.
        duplicate_rows: rows refused because the writer already held their (table keys, ts).
        last_error: the last write error, or None once writing works again.
        files: live files in the manifest.
    """

    sealed_through_ms: int | None
    pending_rows: int
    dropped_rows: int
    duplicate_rows: int
    last_error: str | None
    files: int


@dataclass(frozen=True)
class Sealed:
    """What one seal put on disk, for a reader in the same process that would otherwise read it back.

    Attributes:
        after_ms: the sealed-through time before this seal (every row here is newer; None: nothing was).
        through_ms: the sealed-through time after it.
        tables: each table's rows as written, one table per segment (per hour spanned), each sorted by
            the table's SORT_KEYS, then ts.
    """

    after_ms: int | None
    through_ms: int
    tables: dict[str, list[pa.Table]] = field(default_factory=dict)


class StoreWriter:
    """The one writer of a store directory.

    Args:
        root: the store directory; created if it does not exist or is empty.
        head: the Head live readers use; a new one if None. The writer appends every frame to it.
        flush_interval_s: seal a segment once the buffer spans this much data time.
        compaction: "background" (a thread, for live collection), "child" (a thread that runs due
            compactions in a short-lived child process: for writers that run for days, whose resident
            memory should not keep a merge's peak; storage.compaction_process), "inline" (after each
            seal; for backfills and tests) or "off".
        grace_s: seconds superseded files stay on disk for readers still using them.
        retention_ms: per-table retention overrides (see compactor.DEFAULT_RETENTION_MS).
        max_pending_s: while seals fail, keep at most this much buffered data time (oldest dropped).
        merge_segments: segments of the open hour that trigger a merge into one part.
        roll_lag_ms: the open hour's sealed minutes are rolled once this far behind (compactor.ROLL_LAG_MS).

    Raises:
        NotAStoreError, StoreVersionError: `root` holds something else or a newer store.
        StoreLockedError: another writer holds the store.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        head: Head | None = None,
        flush_interval_s: float = 10.0,
        compaction: str = "background",
        grace_s: float = 60.0,
        retention_ms: Mapping[str, int] | None = None,
        max_pending_s: float = 3600.0,
        merge_segments: int = 30,
        roll_lag_ms: int = ROLL_LAG_MS,
    ) -> None:
        """Open (or create) the store at `root` for writing."""
        if compaction not in ("background", "child", "inline", "off"):
            raise ValueError(f"compaction must be background, child, inline or off, not {compaction!r}")
        self.root = Path(root)
        self.head = head if head is not None else Head()
        self.flush_interval_ms = int(flush_interval_s * 1000)
        self.max_pending_ms = int(max_pending_s * 1000)
        self._lock = open_store(self.root)
        try:
            manifest = read_manifest(self.root) if (self.root / MANIFEST).exists() else None
            if manifest is None:
                manifest = Manifest()
                write_manifest(self.root, manifest)
            remove_unlisted(self.root, manifest)
        except OSError as err:
            self._lock.release()
            where = err.filename or self.root
            raise StoreError(f"cannot write store {self.root}: {err.strerror} ({where})") from None
        except BaseException:
            self._lock.release()
            raise
        self.live = LiveManifest(self.root, manifest)
        merging = {"retention_ms": retention_ms, "merge_segments": merge_segments, "roll_lag_ms": roll_lag_ms}
        self.compactor = Compactor(self.live, grace_s=grace_s, **merging)
        self._compaction = compaction
        self._child: ChildCompaction | None = None
        if compaction == "child":
            self._child = ChildCompaction(self.live, grace_s=grace_s, **merging)
        self._pending: dict[str, list[pa.RecordBatch]] = {}
        self._pending_ts: list[int] = []
        self._held_ts: set[int] = set()
        """Every row timestamp in the buffer (rows may carry another tick's time than their frame)."""
        self._seq = 0
        self._dropped = 0
        self._duplicates = 0
        self._stale_frames = 0
        self._error: str | None = None
        self._closed = False
        self._wake = threading.Event()
        self.seal_listeners: list[Callable[[Sealed], None]] = []
        """Called (in the thread that stores frames) with each seal once it is published; a listener's
        error is logged and does not fail the seal."""
        self._thread: threading.Thread | None = None
        if compaction in ("background", "child"):
            self._thread = threading.Thread(target=self._compact_loop, name="store-compactor", daemon=True)
            self._thread.start()

    @property
    def status(self) -> WriterStatus:
        """A snapshot of the writer's state."""
        manifest = self.live.current
        return WriterStatus(
            sealed_through_ms=manifest.sealed_through_ms,
            # Copies: the poller thread may be appending while a watcher asks.
            pending_rows=sum(b.num_rows for batches in list(self._pending.values()) for b in list(batches)),
            dropped_rows=self._dropped,
            duplicate_rows=self._duplicates,
            last_error=self._error,
            files=len(manifest.files),
        )

    def append(self, frame: Frame) -> None:
        """Add one tick: to the head at once, to disk at the next seal."""
        self.head.append(frame)
        self.store(frame)

    def store(self, frame: Frame) -> None:
        """Add one tick to disk only: for a head that someone else (a Poller) already fed."""
        if self._pending_ts and frame.ts_ms - self._pending_ts[0] >= self.flush_interval_ms:
            self.flush()
        sealed = self.live.current.sealed_through_ms
        if sealed is not None and frame.ts_ms <= sealed:
            # Already on disk (from an earlier run, a clock that went back, or a second frame for a
            # tick just sealed): storing it again would duplicate rows in a compacted hour.
            if self._stale_frames == 0:
                log.warning("store %s: dropping frames at or before %d (already sealed)", self.root, sealed)
            self._stale_frames += 1
            return
        for name, batch in frame.batches.items():
            if batch.num_rows:
                rows = self._admit(name, _conform(name, batch), frame.ts_ms, sealed)
                if rows.num_rows:
                    self._pending.setdefault(name, []).append(rows)
        if frame.ts_ms not in self._pending_ts:
            self._pending_ts.append(frame.ts_ms)

    def _admit(self, name: str, batch: pa.RecordBatch, frame_ts: int, sealed: int | None) -> pa.RecordBatch:
        """The rows of `batch` whose (keys, ts) the writer holds neither buffered nor sealed.

        Checked by each row's own ts, not the frame's: a frame that carries another tick's rows (the
        poller's old late-answer bug) must not slip a second copy of that tick past the writer.
        """
        ts = batch.column("ts").cast(pa.int64())
        bounds = pc.min_max(ts)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        refused = 0
        if sealed is not None and low <= sealed:
            keep = pc.greater(ts, sealed)
            refused = batch.num_rows - pc.sum(keep.cast(pa.int64())).as_py()
            batch, ts = batch.filter(keep), ts.filter(keep)
        stamps = {frame_ts} if low == high == frame_ts else set(pc.unique(ts).to_pylist())
        again = stamps & self._held_ts
        rows, repeated = first_rows(name, batch, self._held_keys(name, again) if again else ())
        self._held_ts |= stamps
        self._count_refused(name, refused + repeated, frame_ts)
        return rows

    def _held_keys(self, name: str, stamps: set[int]) -> set[KeyTuple]:
        """The (keys, ts) of table `name` already buffered at any of `stamps`."""
        held: set[KeyTuple] = set()
        wanted = pa.array(sorted(stamps), pa.int64())
        for batch in self._pending.get(name, []):
            same = batch.filter(pc.is_in(batch.column("ts").cast(pa.int64()), value_set=wanted))
            held.update(key_tuples(name, same))
        return held

    def _count_refused(self, name: str, refused: int, ts_ms: int) -> None:
        """The last line of defence against a second row for one (keys, ts): say so once, count always."""
        if not refused:
            return
        if self._duplicates == 0:
            log.warning(
                "store %s: refused %d %s rows (frame %d) whose (%s, ts) it already holds, buffered or "
                "sealed; the first row of each is kept (further refusals are counted in the writer's status)",
                self.root,
                refused,
                name,
                ts_ms,
                ", ".join(SORT_KEYS[name]),
            )
        else:
            log.debug("store %s: refused %d duplicate %s rows (frame %d)", self.root, refused, name, ts_ms)
        self._duplicates += refused

    def flush(self) -> bool:
        """Seal everything buffered now; return False (and keep the buffer) if the disk refused."""
        if not self._pending_ts:
            return True
        after = self.live.current.sealed_through_ms
        sealed = Sealed(after, max(self._pending_ts))
        try:
            entries = self._seal(sealed.tables)
        except OSError as err:
            if self._error is None:
                log.error(
                    "store %s: cannot write (%s); keeping the live view and up to %.0f s in memory, "
                    "will retry every flush",
                    self.root,
                    err.strerror or err,
                    self.max_pending_ms / 1000,
                )
            self._error = str(err)
            self._trim_pending()
            return False
        if self._error is not None:
            log.warning("store %s: writing again (%d rows were dropped meanwhile)", self.root, self._dropped)
        self._error = None
        self._pending.clear()
        self._pending_ts.clear()
        self._held_ts.clear()
        self._tell(sealed)
        if entries and self._compaction == "inline":
            self.compactor.run_once()
        elif entries:
            self._wake.set()
        return True

    def compact(self) -> int:
        """Run every due compaction now (in this thread); return the files written or dropped."""
        return self.compactor.run_once()

    def close(self) -> None:
        """Seal what is buffered, stop the compactor thread and release the lock (idempotent)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._child is not None:
                self._child.stop()
            self._wake.set()
            if self._thread is not None:
                self._thread.join()
            self._lock.release()

    def __enter__(self) -> StoreWriter:
        """Use as a context manager; close() on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the writer."""
        self.close()

    def _tell(self, sealed: Sealed) -> None:
        for listener in self.seal_listeners:
            try:
                listener(sealed)
            except Exception:  # a reader's bug must not stop the recording
                log.exception("store %s: a seal listener failed", self.root)

    def _seal(self, tables: dict[str, list[pa.Table]]) -> list[FileEntry]:
        """Write every buffered table as segments (one per hour it spans) and publish them; each
        segment's sorted rows are added to `tables`."""
        written: list[FileEntry] = []
        try:
            for name, batches in self._pending.items():
                rows = pa.Table.from_batches(batches, schema=TABLES[name])
                hours = pc.divide(rows.column("ts").cast(pa.int64()), HOUR_MS)
                spanned = pc.unique(hours).to_pylist()
                for hour in spanned:
                    part = rows if len(spanned) == 1 else rows.filter(pc.equal(hours, hour))
                    part = sort_table(part, SORT_KEYS[name])
                    tables.setdefault(name, []).append(part)
                    written.append(self._write_segment(name, part, hour * HOUR_MS))
            self.live.commit(written, sealed_through_ms=max(self._pending_ts))
        except BaseException:
            for entry in written:
                (self.root / entry.path).unlink(missing_ok=True)
            raise
        return written

    def _write_segment(self, name: str, rows: pa.Table, hour_ms: int) -> FileEntry:
        """Write `rows` (sorted by the table's SORT_KEYS, then ts) as one segment."""
        self._seq += 1
        first = int(pc.min(rows.column("ts").cast(pa.int64())).as_py())
        rel = file_relpath(name, hour_ms, unique_name("seg", first, self._seq))
        return write_atomic(
            self.root,
            rel,
            [rows],
            table=name,
            level="seg",
            schema=TABLES[name],
            keys=SORT_KEYS[name],
            counters=COUNTERS[name],
        )

    def _trim_pending(self) -> None:
        """Drop the oldest buffered ticks beyond max_pending_ms (the disk has been full that long)."""
        if self._pending_ts[-1] - self._pending_ts[0] <= self.max_pending_ms:
            return
        cutoff = self._pending_ts[-1] - self.max_pending_ms
        for name, batches in self._pending.items():
            kept = []
            for batch in batches:
                ts = batch.column("ts").cast(pa.int64())
                mask = pc.greater_equal(ts, cutoff)
                self._dropped += batch.num_rows - pc.sum(mask.cast(pa.int64())).as_py()
                kept_batch = batch.filter(mask)
                if kept_batch.num_rows:
                    kept.append(kept_batch)
            self._pending[name] = kept
        self._pending_ts = [t for t in self._pending_ts if t >= cutoff]
        self._held_ts = {t for t in self._held_ts if t >= cutoff}

    def _compact_loop(self) -> None:
        """Background compaction: wake after each seal, stop when the writer closes."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            if self._child is not None:
                self._child.run_once()
            else:
                self.compactor.run_once()


def _conform(name: str, batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch in its table's exact schema (a source may build it with looser nullability)."""
    schema = TABLES.get(name)
    if schema is None:
        raise ValueError(f"frame carries unknown table {name!r}; known: {', '.join(TABLES)}")
    if batch.schema.equals(schema):
        return batch
    return batch.select(schema.names).cast(schema)
