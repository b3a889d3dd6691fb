"""Hardened output for paths a user names: atomic files and directories, no symlinks, 0644 at most.

storage.layout.atomic_write_bytes serves the store's own files (a directory only its writer uses);
what is here is for paths a user names, where a planted symlink or an existing file must be refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from storage.layout import fsync_dir

FILE_MODE = 0o644
DIR_MODE = 0o755


class OutputError(Exception):
    """An output path that cannot or must not be written; the message is one line."""


def check_target(path: Path, *, force: bool) -> None:
    """Refuse a symlink always, and an existing path unless `force`; the parent must be a directory.

    Raises:
        OutputError: naming the path and what to do.
    """
    if path.is_symlink():
        raise OutputError(f"{path} is a symlink; refusing to write through it (name a real path)")
    if path.exists() and not force:
        raise OutputError(f"{path} already exists; pass --force to replace it")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {parent} is not writable")


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = FILE_MODE) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on success fsync it, chmod it and rename it over `path`.

    The temp file is made with O_EXCL (mkstemp), so it never follows a planted symlink; a symlink at
    `path` itself is refused: the user named a link, and neither following nor replacing it is safe
    to guess.
    """
    if path.is_symlink():
        raise OutputError(f"{path} is a symlink; refusing to write through it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write `data` to `path` atomically (temp, fsync, rename, fsync the directory)."""
    with atomic_file(path, mode) as fh:
        fh.write(data)


def fsync_file(path: Path) -> None:
    """Persist a file written by someone else (DuckDB, pyarrow) before it is published by a rename."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def harden_tree(root: Path) -> None:
    """Make every file under `root` 0644 and every directory 0755, and fsync them all (before publishing)."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in filenames:
            path = here / name
            os.chmod(path, FILE_MODE)
            fsync_file(path)
        for name in dirnames:
            os.chmod(here / name, DIR_MODE)
        fsync_dir(here)
    os.chmod(root, DIR_MODE)


def build_dir(final: Path, *, force: bool, fill: Callable[[Path], None]) -> None:
    """Build a directory in a private temp sibling with `fill`, then publish it at `final` by rename.

    Readers see no directory or the whole one. With `force` an existing `final` is moved aside and
    deleted only after the new one is in place. A symlink at `final` is always refused.

    Raises:
        OutputError: the target is refused (see check_target).
    """
    check_target(final, force=force)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        fill(tmp)
        harden_tree(tmp)
        old: Path | None = None
        if final.exists() or final.is_symlink():
            check_target(final, force=force)  # it may have turned into a link meanwhile
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, old / "replaced")
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
