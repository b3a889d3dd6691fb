"""Recording the live rack into a store: the one way `monitor`, `monitor demo` and `monitor collect` do it."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from collectors.source import Source
from monitor.errors import UserError
from storage.frame import Frame
from storage.head import Head


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
            self.writer = StoreWriter(root, head=head, flush_interval_s=flush_s, compaction="background")
        except StoreLockedError as err:
            raise StoreBusy(str(err)) from None
        except StoreError as err:
            raise UserError(str(err)) from None
        except OSError as err:
            raise UserError(f"cannot record into {root}: {err.strerror or err}") from None
        self.sources: list[Source] = [HostSampler(root)]

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
