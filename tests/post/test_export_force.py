"""`monitor export --force` replaces a bundle and nothing else; failures leave nothing; modes follow umask.

Issue 12: `-o DIR --force` replaced a folder holding thesis.txt, and `-o . --force` left an empty
`..xxxx.old/` behind. Every refusal here must be one line, exit 1, and leave the tree byte for byte.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fs_checks import fingerprint
from tests.post.conftest import monitor, one_line_error

SINCE, UNTIL = "2025-06-15T15:00:00Z", "2025-06-15T15:10:00Z"


def export_args(store: Path) -> list[str]:
    """A quick export of the straggler store (events only, no report)."""
    window = ["--since", SINCE, "--until", UNTIL]
    return ["export", "--store", str(store), *window, "--tables", "events", "--no-report"]


def make_bundle(store: Path, out: Path) -> None:
    done = monitor(*export_args(store), "-o", str(out))
    assert done.returncode == 0, done.stderr


def test_force_replaces_a_bundle_and_leaves_no_temp_behind(straggler: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    make_bundle(straggler, out)
    first = json.loads((out / "EXPORT.json").read_text())
    assert "EXPORT.json" not in first["files"] and "MANIFEST.json" in first["files"]
    listed = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert listed == {*first["files"], "EXPORT.json"}, "EXPORT.json must list every other file"
    one_line_error(monitor(*export_args(straggler), "-o", str(out)), "already exists; pass --force")
    (out / "EXPORT.json").touch()  # to tell the replaced bundle from the old one by inode
    old_inode = (out / "EXPORT.json").stat().st_ino
    done = monitor(*export_args(straggler), "-o", str(out), "--force")
    assert done.returncode == 0, done.stderr
    assert (out / "EXPORT.json").stat().st_ino != old_inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"], "temp or .old leftovers"


def _thesis(out: Path) -> None:
    out.mkdir()
    (out / "thesis.txt").write_text("four years of work\n")


def _stray_file(out: Path) -> None:
    (out / "notes.txt").write_text("mine\n")


def _stray_dir(out: Path) -> None:
    (out / "drafts").mkdir()


def _inner_link(out: Path) -> None:
    (out / "events" / "elsewhere").symlink_to(out.parent)


def _foreign_manifest(out: Path) -> None:
    out.mkdir()
    (out / "EXPORT.json").write_text(json.dumps({"format": "someone-else", "files": []}))


def _a_file(out: Path) -> None:
    out.write_text("not a directory\n")


def _link_to_bundle(out: Path) -> None:
    out.symlink_to(out.parent / "real")


REFUSALS: dict[str, tuple[bool, Callable[[Path], None], str]] = {
    # name: (start from a real bundle at out, what to do to it, what the one line says)
    "folder with thesis.txt": (False, _thesis, "no EXPORT.json listing its files"),
    "bundle plus a file of mine": (True, _stray_file, "notes.txt is not one of its files"),
    "bundle plus an empty folder": (True, _stray_dir, "drafts is not one of its files"),
    "bundle plus a symlink": (True, _inner_link, "events/elsewhere is not one of its files"),
    "someone else's EXPORT.json": (False, _foreign_manifest, "no EXPORT.json listing its files"),
    "a file": (False, _a_file, "not a directory"),
    "a symlink to a bundle": (False, _link_to_bundle, "is a symlink; refusing"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_force_refuses_anything_but_a_bundle_and_changes_nothing(
    straggler: Path, tmp_path: Path, case: str
) -> None:
    from_bundle, spoil, says = REFUSALS[case]
    out = tmp_path / "out"
    make_bundle(straggler, tmp_path / "real")
    if from_bundle:
        make_bundle(straggler, out)
    spoil(out)
    before = fingerprint(tmp_path)
    one_line_error(monitor(*export_args(straggler), "-o", str(out), "--force"), says)
    assert fingerprint(tmp_path) == before


def test_force_on_the_current_directory_is_refused_even_when_it_is_a_bundle(
    straggler: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "b"
    make_bundle(straggler, bundle)
    before = fingerprint(tmp_path)
    for name in (".", str(bundle / "events" / "..")):
        done = monitor(*export_args(straggler), "-o", name, "--force", cwd=bundle)
        one_line_error(done, "current directory")
    assert fingerprint(tmp_path) == before, "a temp or ..xxxx.old folder was left"


def test_a_failed_replace_keeps_the_old_bundle_and_leaves_nothing(straggler: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    make_bundle(straggler, out)
    before = fingerprint(tmp_path)
    empty_window = ["--since", "2024-01-01T00:00:00Z", "--until", "2024-01-02T00:00:00Z"]
    args = ["export", "--store", str(straggler), *empty_window, "--no-report", "-o", str(out), "--force"]
    one_line_error(monitor(*args), "no data between")
    assert fingerprint(tmp_path) == before


def modes(bundle: Path) -> tuple[set[int], set[int]]:
    """(file modes, directory modes) found in a bundle, the bundle directory included."""
    files = {stat.S_IMODE(p.stat().st_mode) for p in bundle.rglob("*") if p.is_file()}
    dirs = {stat.S_IMODE(p.stat().st_mode) for p in [bundle, *bundle.rglob("*")] if p.is_dir()}
    return files, dirs


@pytest.mark.parametrize(
    ("store_umask", "export_umask", "file_mode", "dir_mode"),
    [
        (0o077, 0o022, 0o600, 0o700),  # a private store is never exported wider than itself
        (0o022, 0o077, 0o600, 0o700),  # the umask of the export is followed
        (0o022, 0o027, 0o640, 0o750),
        (0o022, 0o022, 0o644, 0o755),
        (0o002, 0o002, 0o664, 0o775),
    ],
)
def test_bundle_modes_follow_the_umask_and_never_exceed_the_stores(
    tmp_path: Path, store_umask: int, export_umask: int, file_mode: int, dir_mode: int
) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    made = monitor("sim", "--backfill", "20s", "--store", str(store), "--seed", "1", umask=store_umask)
    assert made.returncode == 0, made.stderr
    args = ["export", "--store", str(store), "--last", "1h", "--format", "csv", "-o", str(out)]
    done = monitor(*args, umask=export_umask)
    assert done.returncode == 0, done.stderr
    assert modes(out) == ({file_mode}, {dir_mode})
