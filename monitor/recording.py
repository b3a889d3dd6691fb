"""Recording the live rack into a store: the one way `monitor`, `monitor demo` and `monitor collect` do it."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from collectors.source import Source
from monitor.errors import UserError
from storage.frame import Frame
from storage.head import Head

if TYPE_CHECKING:
    from storage.writer import StoreWriter


class StoreBusy(UserError):
    """Another process (usually `monitor collect`) is already writing this store."""


class Recording:
    """A store writer fed by the poller, plus this host's own sample (CPU, memory, disk, network).

    Use as a context manager around the poller's life: `sink` goes into the poller's sinks,
    `sources` into its sources; leaving the block seals the last segment.

    Args:
        root: the store directory (created if new; refused with one line if it is not a store,
            is from a newer version, or another writer holds it).
        head: the head the poller appends to, which the writer seals from.
        flush_s: data time per sealed segment.
    """

    def __init__(self, root: Path, head: Head, *, flush_s: float = 10.0) -> None:
        """Open the store for writing."""
        from storage.host import HostSampler
        from storage.layout import StoreError
        from storage.lock import StoreLockedError
        from storage.writer import StoreWriter

        self.root = root
        try:
            # Compaction in short-lived child processes: a merge's peak and DuckDB never stay resident in a
            # recorder or live client that runs for days (storage/compaction_process.py, issue 18).
            self.writer = StoreWriter(root, head=head, flush_interval_s=flush_s, compaction="child")
        except StoreLockedError as err:
            raise StoreBusy(str(err)) from None
        except StoreError as err:
            raise UserError(str(err)) from None
        except OSError as err:
            raise UserError(f"cannot record into {root}: {err.strerror or err}") from None
        self.sources: list[Source] = [HostSampler(root), RecordingWatch(self.writer)]

    def sink(self, frame: Frame) -> None:
        """Hand one rack frame to the writer (it seals on its own schedule, off the poller's tick)."""
        self.writer.store(frame)

    def close(self) -> None:
        """Seal what is left and release the store's lock."""
        self.writer.close()

    def __enter__(self) -> Recording:
        """The recording itself."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the recording."""
        self.close()


class RecordingWatch:
    """A Source that turns the writer's health into events: recording stopped (and why), resumed.

    The events travel in the rack's frames, so the TUI shows them as they happen and the store
    keeps them: the stopped event is held in memory with the frames it could not write, and lands
    on disk with them once writing resumes.
    """

    name = "recording"

    def __init__(self, writer: StoreWriter) -> None:
        """Watch `writer`, which starts out writing."""
        self.writer = writer
        self._stopped_at_ms: int | None = None
        self._dropped_before = 0

    def poll(self, ts_ms: int) -> Frame:
        """An events batch when the writer's state changed since the last tick, else an empty frame."""
        from storage.frame import batch_from_rows
        from storage.schemas import EventKind

        status = self.writer.status
        event: tuple[str, str] | None = None
        if status.last_error is not None and self._stopped_at_ms is None:
            self._stopped_at_ms, self._dropped_before = ts_ms, status.dropped_rows
            held_s = self.writer.max_pending_ms / 1000
            event = (
                EventKind.RECORDING_STOPPED,
                f"store {self.writer.root}: {status.last_error}; "
                f"holding up to {held_s:.0f} s in memory, retrying",
            )
        elif status.last_error is None and self._stopped_at_ms is not None:
            gap_s = (ts_ms - self._stopped_at_ms) / 1000
            dropped = status.dropped_rows - self._dropped_before
            lost = f"{dropped:,} rows dropped" if dropped else "nothing lost"
            event = (
                EventKind.RECORDING_RESUMED,
                f"store {self.writer.root}: writing again after {gap_s:.0f} s; {lost}",
            )
            self._stopped_at_ms = None
        if event is None:
            return Frame(ts_ms, {})
        row = {"ts": ts_ms, "kind": event[0], "source": self.name, "detail": event[1]}
        return Frame(ts_ms, {"events": batch_from_rows("events", [row])})

    def close(self) -> None:
        """Nothing to release: the Recording closes the writer."""
