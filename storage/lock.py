"""One writer per store directory: an flock on DIR/LOCK that names its holder (pid, host, since)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from storage.layout import LOCK, StoreError


class StoreLockedError(StoreError):
    """Another process holds the store's write lock."""


class WriterLock:
    """The exclusive write lock of one store directory.

    The kernel drops an flock when its holder dies, even on kill -9, so a crashed writer never
    leaves a stale lock behind; the pid/host/since written into the file is only for the message
    the next writer shows.
    """

    def __init__(self, root: Path) -> None:
        """Take the lock of `root` or raise StoreLockedError naming the holder."""
        self.path = root / LOCK
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise StoreError(f"cannot open {self.path}: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(self.path)
            os.close(fd)
            raise StoreLockedError(
                f"store {root} is already being written by {holder}; stop that writer first"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError as err:
            # A full disk fails here first; the store could not be written either, so say so now.
            self.release()
            raise StoreError(f"cannot write {self.path}: {err.strerror}") from None

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):  # the holder note only feeds messages
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def describe_holder(path: Path) -> str:
    """'pid 123 on host h since 2025-01-01 10:00:00 UTC', or a vaguer phrase if the file says less."""
    try:
        info = json.loads(path.read_text())
        since = datetime.fromtimestamp(float(info["since"]), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"pid {info['pid']} on host {info['host']} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
