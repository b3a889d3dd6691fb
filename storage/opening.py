"""Opening a store for writing: refuse a directory that is not one, take its write lock, and remove what a
crashed writer left behind (temp files, files no manifest lists)."""

from __future__ import annotations

import logging
from pathlib import Path

from storage.layout import (
    LOCK,
    MANIFEST,
    Manifest,
    NotAStoreError,
    StoreError,
    data_files,
    manifest_temps,
    read_manifest,
)
from storage.lock import WriterLock

log = logging.getLogger("storage.writer")


def open_store(root: Path) -> WriterLock:
    """Create the store directory if needed, refuse a foreign one, and take its write lock."""
    if root.exists() and not root.is_dir():
        raise NotAStoreError(f"{root} is not a rack-monitor store (it is a file)")
    if root.is_dir() and not (root / MANIFEST).exists():
        # Only a store's own lock or an interrupted first manifest may already be there.
        temps = set(manifest_temps(root))
        others = [p.name for p in root.iterdir() if p.name != LOCK and p not in temps]
        if others:
            raise NotAStoreError(
                f"{root} is not a rack-monitor store (no {MANIFEST}, and it holds other files); "
                "pick an empty or new directory"
            )
    elif root.is_dir():
        read_manifest(root)  # a clear error for a foreign or newer store before touching its lock
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"cannot create store directory {root}: {err.strerror}") from None
    return WriterLock(root)


def remove_unlisted(root: Path, manifest: Manifest) -> None:
    """Delete what a crashed writer left: temp files and files it never published."""
    known = {f.path for f in manifest.files} | {p for p, _ in manifest.doomed}
    removed = 0
    for path in data_files(root):
        rel = path.relative_to(root).as_posix()
        if rel not in known:
            path.unlink(missing_ok=True)
            removed += 1
    for temp in manifest_temps(root):
        temp.unlink(missing_ok=True)
    if removed:
        log.info("store %s: removed %d unpublished files left by an interrupted writer", root, removed)
