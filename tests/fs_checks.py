"""A directory tree's fingerprint, for tests that must show a command changed nothing on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def fingerprint(top: Path) -> dict[str, tuple[int, str]]:
    """Every path under `top` (no link followed) -> (mode, a file's sha256, a link's target or '')."""
    seen: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            info = path.lstat()
            if path.is_symlink():
                digest = "-> " + os.readlink(path)
            elif path.is_dir():
                digest = ""
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            seen[str(path.relative_to(top))] = (info.st_mode, digest)
    return seen
