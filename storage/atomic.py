"""The one atomic writer: files and directories that appear whole or not at all, never through a symlink.

Everything this project writes goes through here: the store's manifest and Parquet files, the rack
config, export bundles and snapshots. A file is written to a fresh temp sibling made with O_EXCL
(mkstemp, so a planted symlink is never followed), fsynced, given its mode and renamed over the target;
the directory is fsynced after the rename. Modes follow the umask, as open(2) and mkdir(2) would, and a
copy of the store (an export bundle) is never more open than the store itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"
"""Temp files end in this, so nothing that reads `*.parquet` or `*.json` can pick them up."""
BUILDER_LOCK = ".builder.lock"
"""In a build_dir temp directory: flock()ed by the building process for its life, so a later build of
the same target knows a directory whose lock is free was left by a builder that died (kill -9)."""

log = logging.getLogger(__name__)


class OutputError(Exception):
    """An output path that cannot or must not be written; the message is one line."""


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads' creates)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc (not Linux): the only other way is to set it and put it back
    os.umask(mask)
    return mask


def output_modes(like: Path | None = None) -> tuple[int, int]:
    """(file mode, directory mode) for new output: what the umask allows, narrowed to `like`'s modes.

    Args:
        like: a directory whose copy is being written (the store an export cuts from): the copy's
            directories get no bit its directory lacks, and its files none its MANIFEST.json lacks,
            so a store kept 0700 under umask 077 is never exported world-readable.
    """
    umask = current_umask()
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    if like is not None:
        dir_mode &= stat.S_IMODE(like.stat().st_mode)
        file_mode &= dir_mode & 0o666
        manifest = like / "MANIFEST.json"
        if manifest.is_file():
            file_mode &= stat.S_IMODE(manifest.stat().st_mode)
    return file_mode, dir_mode


def fsync_dir(path: Path) -> None:
    """Persist a rename or a new entry in a directory (POSIX needs the directory itself synced)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Persist a file written by someone else (DuckDB, pyarrow) before it is published by a rename."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def is_temp_of(name: str, target: str) -> bool:
    """True when `name` is a temp file atomic_file made for `target` (left by a crash: safe to delete)."""
    return name.startswith(f".{target}.") and name.endswith(TMP_SUFFIX)


@contextlib.contextmanager
def atomic_file(path: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on success fsync it, chmod it and rename it over `path`.

    Args:
        path: the file to create or replace.
        mode: its permission bits; None: what the umask gives a new file (0o666 & ~umask).

    The temp file is made with O_EXCL (mkstemp), so it never follows a planted symlink; a symlink at
    `path` itself is refused: the user named a link, and neither following nor replacing it is safe
    to guess. On any failure the temp file is removed and `path` is as it was.
    """
    if path.is_symlink():
        raise OutputError(f"{path} is a symlink; refusing to write through it")
    final_mode = output_modes()[0] if mode is None else mode
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, final_mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` atomically (temp, fsync, rename, fsync the directory)."""
    with atomic_file(path, mode) as fh:
        fh.write(data)


def settle_tree(root: Path, file_mode: int, dir_mode: int) -> None:
    """Give every file under `root` `file_mode` and every directory `dir_mode`; fsync them all.

    Whatever wrote the files (pyarrow, DuckDB, mkstemp) chose its own modes; a symlink in the tree
    (none of our writers makes one) is refused rather than chmod-ed through.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in [*filenames, *dirnames]:
            if (here / name).is_symlink():
                raise OutputError(f"{here / name} is a symlink; refusing to publish it")
        for name in filenames:
            os.chmod(here / name, file_mode)
            fsync_file(here / name)
        for name in dirnames:
            os.chmod(here / name, dir_mode)
        fsync_dir(here)
    os.chmod(root, dir_mode)


def build_dir(
    final: Path,
    *,
    force: bool,
    fill: Callable[[Path], None],
    like: Path | None = None,
    replaceable: Callable[[Path], None] | None = None,
) -> None:
    """Build a directory with `fill`, then publish it at `final` by rename: readers see none or all of it.

    The new tree is built inside a private temp sibling (mode 0700, made by mkdtemp); with `force` an
    existing `final` is moved into that same temp directory, the new tree renamed into place, and
    only then is the temp directory (holding the old tree) deleted. On any failure before the new tree
    is in place the old one is moved back and the temp directory removed: nothing is left behind.

    Args:
        final: the directory to create or replace.
        force: replace an existing `final` (after `replaceable` agreed).
        fill: writes the tree into the directory it is given.
        like: cap the modes at this directory's (see output_modes).
        replaceable: raises OutputError when an existing `final` must not be replaced; without it,
            `force` replaces any directory.

    Raises:
        OutputError: the target is refused.
    """
    remove_abandoned(final)  # first: a tree a killed build had moved aside is `final` again
    check_target(final, force=force)
    if final.exists() and replaceable is not None:
        replaceable(final)
    file_mode, dir_mode = output_modes(like)
    work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=TMP_SUFFIX))
    lock = os.open(work / BUILDER_LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        new, old = work / "new", work / "old"
        new.mkdir(mode=dir_mode)
        fill(new)
        settle_tree(new, file_mode, dir_mode)
        if final.exists() or final.is_symlink():
            check_target(final, force=force)  # it may have turned into a link meanwhile
            if replaceable is not None:
                replaceable(final)  # or been filled with something else
            os.rename(final, old)
        try:
            os.rename(new, final)
        except BaseException:
            if old.exists():
                os.rename(old, final)
            raise
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(lock)


def remove_abandoned(final: Path) -> list[Path]:
    """Delete the temp directories build_dir made for `final` whose builder died; returns them.

    A directory is abandoned when it is ours (same owner, a real directory named as build_dir names
    them) and no process holds its BUILDER_LOCK: a build still running holds it, and a directory
    without the lock file (being made, or not build_dir's) is left alone.
    """
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    for entry in final.parent.iterdir():
        if not is_temp_of(entry.name, final.name) or not _own_directory(entry):
            continue
        try:
            fd = os.open(entry / BUILDER_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its builder is alive
            continue
        try:
            _put_back_replaced(entry / "old", final)
            shutil.rmtree(entry)
            removed.append(entry)
            log.warning("removed %s, left by an earlier build of %s that did not finish", entry, final)
        finally:
            os.close(fd)
    return removed


def _put_back_replaced(old: Path, final: Path) -> None:
    """A builder killed between moving the replaced tree aside and renaming the new one in left
    `final` missing and its old tree in the temp directory: put it back before the rest goes."""
    if _own_directory(old) and not final.exists() and not final.is_symlink():
        os.rename(old, final)
        fsync_dir(final.parent)
        log.warning("put back %s from an earlier build that did not finish", final)


def _own_directory(path: Path) -> bool:
    """A real directory (not a link) owned by this user."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
